"""From maps to segments: thresholds, connected components, watershed and agglomeration,
evaluation against ground truth, masks and label clean-up."""
