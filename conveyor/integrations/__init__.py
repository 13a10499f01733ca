"""Where users already are: tracing (``otel``), Django Tasks (``django``), Flask (``flask``).
Each is thin over the app (``around_job``, ``around_enqueue``) and imported only when used."""
