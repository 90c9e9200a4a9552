"""Train the reference digits CNN and export it: ``python examples/digits/digits_cnn.py OUT_DIR``.

The code lives in ``edgefleet.build.digits`` so the quickstart and the tests use the very same model.
"""

from edgefleet.build.digits import main

if __name__ == "__main__":
    raise SystemExit(main())
