"""The CLI as a file `spark-submit` can run (it runs Python files, not console scripts).

    spark-submit --master spark://HOST:7077 --py-files denial_model-X-py3-none-any.whl \
        "$(python -m denial_model.spark.submit)" score claims/ --engine spark --output scored/ ...

Run as a module it prints its own path (for the command above); run by spark-submit it is
`denial-model` with the arguments given, in the session spark-submit made.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    if __spec__ is not None and __spec__.name == "denial_model.spark.submit":  # python -m ...
        print(Path(__file__).resolve())
        return
    from denial_model.cli import app

    app(args=sys.argv[1:], prog_name="denial-model")


if __name__ == "__main__":
    main()
