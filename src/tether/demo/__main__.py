"""``python -m tether.demo [--host 127.0.0.1] [--port 8000]``: serve the demo."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("the demo needs the 'demo' extra: pip install 'tether[demo]'") from None
    from .app import create_app

    base = f"http://{args.host}:{args.port}"
    print(f"tether demo: serving on {base}  (Ctrl-C stops it)")
    print("try:")
    print(f"  curl -s -X POST {base}/notes -H 'content-type: application/json' "
          f"-d '{{\"body\": \"buy milk\"}}'")
    print(f"  curl -s {base}/notes")
    print(f"  curl -s {base}/health/detailed")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
