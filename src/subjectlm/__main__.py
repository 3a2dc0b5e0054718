import sys

from subjectlm.cli import main

sys.exit(main())
