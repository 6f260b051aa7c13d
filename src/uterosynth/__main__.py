"""``python -m uterosynth``."""

from .cli import main

main()
