"""Watershed/agglomeration with waterz, and the affinity convention as an executable decision."""

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.segmentation.agglomerate import agglomerate, parse_scoring_function, watershed
from chunkflow.segmentation.evaluate import evaluate_segmentation
from tests.conftest import GALA, read_stack


def affinities(labels: np.ndarray) -> np.ndarray:
    """Channel c of p = 1 where p and p - e_c share a (nonzero) label; order z, y, x."""
    out = np.zeros((3, *labels.shape), np.float32)
    same = labels != 0
    out[0, 1:] = (labels[1:] == labels[:-1]) & same[1:]
    out[1, :, 1:] = (labels[:, 1:] == labels[:, :-1]) & same[:, 1:]
    out[2, :, :, 1:] = (labels[:, :, 1:] == labels[:, :, :-1]) & same[:, :, 1:]
    return out


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_channel_c_links_p_and_p_minus_e_c(axis):
    labels = np.ones((6, 6, 6), np.uint32)
    cut = [slice(None)] * 3
    cut[axis] = slice(3, None)
    labels[tuple(cut)] = 2
    seg = agglomerate(Chunk(affinities(labels)), 0.5)
    assert len(np.unique(seg.array)) == 2  # the cut along `axis` is seen
    swapped = affinities(labels)[::-1].copy()  # the other channel order misses z/x cuts
    if axis != 1:
        assert len(np.unique(agglomerate(Chunk(swapped), 0.5).array)) != 2


def test_perfect_affinities_reproduce_real_ground_truth():
    gt = read_stack(GALA / "test-gt.lzf.h5")[:20, :50, :50]
    seg = agglomerate(Chunk(affinities(gt), (1, 2, 3)), 0.5)
    assert seg.voxel_offset == (1, 2, 3) and seg.is_segmentation
    metrics = evaluate_segmentation(seg.array, gt)
    assert metrics["voi_split"] < 0.05 and metrics["voi_merge"] < 0.05


def p1_affinities():
    """Affinities from the gala boundary map: 1 - mean boundary of the two voxels."""
    p = read_stack(GALA / "test-p1.lzf.h5")
    out = np.zeros((3, *p.shape), np.float32)
    out[0, 1:] = 1 - (p[1:] + p[:-1]) / 2
    out[1, :, 1:] = 1 - (p[:, 1:] + p[:, :-1]) / 2
    out[2, :, :, 1:] = 1 - (p[:, :, 1:] + p[:, :, :-1]) / 2
    return out


def test_agglomerate_given_fragments_on_real_data():
    ws = read_stack(GALA / "test-ws.lzf.h5")
    seg = agglomerate(Chunk(p1_affinities()), 0.5, fragments=Chunk(ws))
    metrics = evaluate_segmentation(seg.array, read_stack(GALA / "test-gt.lzf.h5"))
    assert metrics["voi_merge"] == pytest.approx(0.187, abs=0.02)
    assert metrics["voi_split"] == pytest.approx(1.144, abs=0.02)
    assert ws.max() == read_stack(GALA / "test-ws.lzf.h5").max()  # input not modified


def test_fragments_and_watershed():
    affs = Chunk(p1_affinities()[:, :20, :50, :50])
    seg, fragments = agglomerate(affs, 0.3, return_fragments=True)
    assert len(np.unique(fragments.array)) >= len(np.unique(seg.array))
    np.testing.assert_array_equal(watershed(affs).array, fragments.array)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(affs=np.zeros((4, 4, 4), np.float32)), "affinity map \\(3, z, y, x\\) is required"),
        (dict(threshold=1.5), "`threshold` 1.5 is out of range"),
        (dict(aff_threshold_low=-0.1), "`aff_threshold_low` -0.1"),
        (dict(aff_threshold_low=0.5, aff_threshold_high=0.5), "must be below `aff_threshold_high`"),
        (dict(fragments=np.zeros((4, 4, 5), np.uint32)), "do not cover the same voxels"),
    ],
)
def test_bad_input(kwargs, message):
    affs = Chunk(kwargs.pop("affs", np.zeros((3, 4, 4, 4), np.float32)))
    if "fragments" in kwargs:
        kwargs["fragments"] = Chunk(kwargs["fragments"])
    with pytest.raises(ChunkflowError, match=message):
        agglomerate(affs, **{"threshold": 0.5, **kwargs})


# Scoring functions: waterz compiles them as C++, so only its grammar is accepted -------------

MEAN = "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"


@pytest.mark.parametrize(
    "text, parsed",
    [
        (MEAN, MEAN),
        ("  OneMinus< MeanAffinity<RegionGraphType,ScoreValue> >\n", MEAN),
        (
            "OneMinus<HistogramQuantileAffinity<RegionGraphType, 050, ScoreValue, 256, false>>",
            "OneMinus<HistogramQuantileAffinity<RegionGraphType, 50, ScoreValue, 256, false>>",
        ),
        (
            "OneMinus<QuantileAffinity<RegionGraphType, 75, ScoreValue>>",
            "OneMinus<QuantileAffinity<RegionGraphType, 75, ScoreValue>>",
        ),
        (
            "Multiply<OneMinus<MaxAffinity<RegionGraphType,ScoreValue>>,MinSize<RegionGraphType>>",
            "Multiply<OneMinus<MaxAffinity<RegionGraphType, ScoreValue>>, "
            "MinSize<RegionGraphType>>",
        ),
        (
            "Step<MeanMaxKAffinity<RegionGraphType,10,ScoreValue>,Constant<RegionGraphType,-1>>",
            "Step<MeanMaxKAffinity<RegionGraphType, 10, ScoreValue>, "
            "Constant<RegionGraphType, -1>>",
        ),
    ],
)
def test_scoring_functions_of_waterz_grammar_are_written_out_from_their_parse(text, parsed):
    assert parse_scoring_function(text) == parsed


def test_the_common_scoring_functions_are_waterz_prebuilt_ones():
    """What we pass for them is what waterz ships compiled: nothing is compiled at run time."""
    from waterz._codegen import iter_specs, normalize

    prebuilt = {normalize(spec.scoring_function) for spec in iter_specs()}
    for text in (
        MEAN,
        "OneMinus<HistogramQuantileAffinity<RegionGraphType, 50, ScoreValue, 256>>",
        "OneMinus<HistogramQuantileAffinity<RegionGraphType, 85, ScoreValue, 256, false>>",
    ):
        assert normalize(parse_scoring_function(text)) in prebuilt


@pytest.mark.parametrize(
    "text, problem",
    [
        (MEAN + "; int main() { return 0; }", "unexpected ';'"),
        (MEAN + " ScoringFunctionType;\n#include <cstdlib>", "unexpected ';'"),
        ('OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"', "unexpected '\"'"),
        ('OneMinus<decltype(std::system("id"))>', "unexpected '('"),
        ("OneMinus<system<RegionGraphType>>", "unknown function 'system'"),
        (MEAN + " ScoringFunctionType", "'ScoringFunctionType' after the end"),
        ("OneMinus<MeanAffinity<RegionGraphType, float>>", "'float' where 'ScoreValue'"),
        ("OneMinus<MeanAffinity<RegionGraphType, ScoreValue>", "it ends where '>' is expected"),
        ("Add<MinSize<RegionGraphType>>", "'>' where ',' is expected"),
        ("OneMinus<QuantileAffinity<RegionGraphType, 101, ScoreValue>>", "integer in 0..100"),
        (
            "OneMinus<HistogramQuantileAffinity<RegionGraphType, 50, ScoreValue, 1000000>>",
            "1..1024",
        ),
        ("OneMinus<QuantileAffinity<RegionGraphType, 50, ScoreValue, maybe>>", "true or false"),
        ("Square<" * 17 + "MinSize<RegionGraphType>" + ">" * 17, "more than 16 functions"),
        ("", "it ends where a function name is expected"),
    ],
)
def test_anything_else_is_refused_in_one_line_naming_the_grammar(text, problem):
    with pytest.raises(ChunkflowError) as err:
        parse_scoring_function(text)
    message = str(err.value)
    assert problem in message and "\n" not in message
    assert "is not a waterz scoring function" in message
    assert "HistogramQuantileAffinity<RegionGraphType, Q, ScoreValue, BINS" in message


def test_agglomerate_never_hands_other_text_to_waterz(monkeypatch):
    import waterz

    given = []
    real = waterz.agglomerate

    def spy(*args, scoring_function, **kwargs):
        given.append(scoring_function)
        return real(*args, scoring_function=scoring_function, **kwargs)

    monkeypatch.setattr(waterz, "agglomerate", spy)
    labels = np.ones((6, 4, 4), np.uint32)
    labels[3:] = 2
    affs = Chunk(affinities(labels))
    with pytest.raises(ChunkflowError, match="unexpected ';'"):
        agglomerate(affs, 0.5, scoring_function=MEAN + ";")
    assert given == []
    median = "OneMinus<HistogramQuantileAffinity<RegionGraphType,50,ScoreValue,256>>"
    seg = agglomerate(affs, 0.5, scoring_function=median)
    assert given == [parse_scoring_function(median)]
    assert len(np.unique(seg.array)) == 2  # the two labels, split at z = 3


def waterz_segmentation(affs: np.ndarray, threshold: float, fragments=None) -> np.ndarray:
    """waterz's own agglomeration (its watershed unless `fragments`), the reference."""
    import waterz

    seeds = None if fragments is None else np.array(fragments, dtype=np.uint64)
    return next(
        waterz.agglomerate(
            affs,
            [threshold],
            fragments=seeds,
            aff_threshold_low=0.001,
            aff_threshold_high=0.9999,
            scoring_function=parse_scoring_function(MEAN),
        )
    ).copy()


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("given", [False, True])
def test_mean_affinity_agglomeration_is_waterz(threshold, given):
    """The default agglomeration merges on the region graph (chunkflow.segmentation.regiongraph)
    and gives waterz's segmentation of the volume: waterz keeps running means in float32, we
    sums in float64, so edges whose scores differ by less than float32 resolution may merge
    in another order, which changes almost nothing."""
    affs = p1_affinities()
    fragments = read_stack(GALA / "test-ws.lzf.h5") if given else None
    ours = agglomerate(
        Chunk(affs),
        threshold,
        0.001,
        0.9999,
        fragments=None if fragments is None else Chunk(fragments),
    ).array
    expected = waterz_segmentation(affs, threshold, fragments)
    count = len(np.unique(expected))
    assert count > 20 and abs(len(np.unique(ours)) - count) <= max(1, count // 1000)
    both = evaluate_segmentation(ours, expected + 1)  # + 1: waterz's 0 voxels count too
    assert both["voi_split"] + both["voi_merge"] < 0.002
    np.testing.assert_array_equal(ours == 0, expected == 0)  # waterz's background stays
    ids = np.unique(ours[ours > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # ids 1, 2, ... in order
