import sys

from ocibox.cgroups import warm_for

warm_for(sys.argv[1:])  # see the ocibox script (ocibox/cli/ocibox)
from ocibox.cli import main  # noqa: E402

main()
