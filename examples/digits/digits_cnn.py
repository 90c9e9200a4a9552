"""Train the reference digits CNN and export it: ``python examples/digits/digits_cnn.py OUT_DIR``.

The code lives in ``edgefleet.optimize.digits`` so the quickstart and the tests use the very same model.
"""

from edgefleet.optimize.digits import main

if __name__ == "__main__":
    raise SystemExit(main())
