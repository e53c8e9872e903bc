import sys

from raygan.cli.main import main

sys.exit(main())
