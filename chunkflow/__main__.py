import sys

from chunkflow.cli.main import main

sys.exit(main())
