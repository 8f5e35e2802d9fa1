"""``python -m dgprov_sandbox``: the same command as ``dgprov sandbox``."""

from .cli import main

main(prog_name="python -m dgprov_sandbox")
