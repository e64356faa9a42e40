"""``python -m logdna_client``: the command line (see ``logdna_client._cli``)."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
