import sys

from scratchllm.cli import main

sys.exit(main())
