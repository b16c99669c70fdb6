import sys

from vxdp.cli import main

sys.exit(main())
