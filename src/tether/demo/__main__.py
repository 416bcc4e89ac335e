"""``python -m tether.demo [--host 127.0.0.1] [--port 8000]``: serve the demo."""

from __future__ import annotations

import argparse
import dataclasses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from .app import Settings, create_app
    except ImportError as error:
        raise SystemExit(f"the demo needs the 'demo' extra ({error}): "
                         f"pip install 'tether[demo]'") from None

    base = f"http://{args.host}:{args.port}"
    settings = Settings.from_env(port=args.port)

    def announce(token: str) -> None:
        auth = '-H "Authorization: Bearer $TOKEN"'
        lines = [
            f"tether demo: encrypted notes on {base}  (Ctrl-C stops it)",
            f"user 'demo', password {settings.password!r}; a token for it, valid 1 hour:",
            f"  export TOKEN={token}",
            "try:",
            f"  curl -s -X POST {base}/notes {auth} -H 'content-type: application/json' "
            f"-d '{{\"body\": \"buy milk\"}}'",
            f"  curl -s {base}/notes {auth}",
            f"also: {base}/docs  {base}/status  {base}/health/detailed  {base}/metrics",
        ]
        print("\n".join(lines), flush=True)

    app = create_app(dataclasses.replace(settings, announce=announce))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
