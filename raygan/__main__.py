import sys

from raygan.cli import main

sys.exit(main())
