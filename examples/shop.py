"""A small shop's background work, as the README's quickstart uses it.

    conveyor -A examples.shop:app worker                  # from the repository's root
    conveyor -A examples.shop:app enqueue shop.invoice 1042 --wait
    python -m examples.shop                               # enqueue from Python, embedded worker

The app is the embedded default: CONVEYOR_URL if set, else ./conveyor.db.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import conveyor

app = conveyor.App()


@app.task(name="shop.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="shop.invoice", queue="documents", result_ttl=7 * 86400)
def invoice(order_id: int) -> dict[str, object]:
    """Render an order's invoice, step by step (``conveyor job ID`` shows how far it got)."""
    steps = ("Loading the order", "Computing taxes", "Rendering the PDF", "Storing it")
    for step, message in enumerate(steps, 1):
        conveyor.progress(100 * (step - 1) / len(steps), message, step=step)
        time.sleep(0.5)
    conveyor.progress(100, "Invoice ready")
    return {"order": order_id, "pdf": f"invoices/{order_id}.pdf"}


@app.task(
    name="shop.charge_card", retries=5, retry_on=(ConnectionError, TimeoutError), retry_delay=2.0
)
def charge_card(order_id: int, cents: int) -> str:
    """Calls a payment provider: retried on network errors, with backoff. Enqueue it with
    ``key=f"charge-{order_id}"`` so a double click charges once."""
    return f"charged {cents / 100:.2f} for order {order_id}"


@app.task(name="shop.notify")
async def notify(email: str, text: str) -> str:
    """An ``async def`` task: first-class, run on an event loop."""
    await asyncio.sleep(0.1)
    return f"sent to {email}: {text}"


@app.periodic(every=timedelta(hours=1), name="shop.release_stale_carts")
def release_stale_carts() -> int:
    """Enqueued once an hour, once across all workers."""
    return 0


if __name__ == "__main__":
    with app.worker(concurrency=4):  # the embedded worker, started and stopped around a block
        print(add.delay(2, 3).result(timeout=10))
        job = charge_card.apply_async((1042, 2599), key="charge-1042")
        print(job.result(timeout=10))
        print(invoice.delay(1042).result(timeout=30))
