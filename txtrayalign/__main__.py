import sys

from txtrayalign.cli import main

sys.exit(main())
