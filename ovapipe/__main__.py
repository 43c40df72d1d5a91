"""``python -m ovapipe TASK ...``: ovapipe's Invoke program (what ``./run invoke`` runs)."""

from ovapipe.program import main

main()
