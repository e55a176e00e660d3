"""``python -m featcache.cli``: the same as the ``featcache`` command."""

from featcache.cli import main

main()
