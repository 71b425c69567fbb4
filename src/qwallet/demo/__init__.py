"""Everything ``qwallet demo`` is, in one place: the platform with demo data and the demo game
studio side by side on loopback, for a newcomer to try the integration end to end.

- ``qwallet.demo.game``: the demo game, a studio's backend and HTML5 client built only on the
  partner kit (``qwallet.partner``), as a studio would run it on its side; it imports nothing
  else of ``qwallet`` (``tests/test_layers.py`` holds it to that). ``qwallet demo-partner`` runs
  it alone (docs/demo-game.md).
- ``qwallet.demo.launch``: the launcher behind ``qwallet demo``: starts ``qwallet serve --demo``
  and ``qwallet demo-partner`` as child processes, points the demo partner at the game
  (its URLs, callback secret, Query Withdrawal credentials) and hands the game the same values.
- The demo data is an operator use case like any other, in ``qwallet.service.demo`` (the demo
  partner, player, operator key and admin; ``seed_demo`` for ``qwallet serve --demo``,
  ``point_demo_partner`` for the launcher), each change audited in its transaction.
- The commands are thin callers in ``qwallet.cli.demo``.

This module imports nothing, so that importing the game does not load the launcher and the
other way round.
"""
