"""`python -m tensorsharp`: the same command line as the `tensorsharp` script."""
from tensorsharp.cli import main

raise SystemExit(main())
