"""One headless browser per process that renders Plotly figures to PNG, SVG or PDF bytes (kaleido).

Starting Chromium costs seconds; a render in a running one costs a fraction of a second. The browser is
started on first use, kept for the life of the process, restarted when it dies, and closed at exit."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import kaleido
from kaleido.errors import JavascriptError, KaleidoError

from core.errors import PathReviewError

RENDER_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0
Result = TypeVar("Result")  # what a coroutine sent to the renderer's loop returns


class FigureRenderer:
    """Renders figure dicts in a kaleido browser driven by an event loop on a private thread."""

    def __init__(self, timeout_s: float = RENDER_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # the web server renders from several threads; start/stop must not race
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._browser: kaleido.Kaleido | None = None
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        return self._browser is not None and self._pid == os.getpid()

    def render(self, figure: dict[str, Any], fmt: str, width: int, height: int, scale: float) -> bytes:
        opts = {"format": fmt, "width": width, "height": height, "scale": scale}
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._call(self._started().calc_fig(figure, opts=opts), self.timeout_s)
                except (KaleidoError, JavascriptError) as exc:  # the figure itself is bad: the browser is fine
                    raise PathReviewError(f"the figure could not be drawn as {fmt.upper()}: {exc}") from exc
                except PathReviewError:
                    raise
                except Exception as exc:  # a dead or hung browser: start a fresh one once
                    self._stop_locked()
                    if attempt == 2:
                        raise PathReviewError(f"figure export failed ({type(exc).__name__}: {exc}); "
                                             "check that Chromium is installed and try again") from exc
        raise AssertionError("unreachable")

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def forget_after_fork(self) -> None:
        """In a forked child the parent's browser, loop thread and lock state are not ours: start afresh on first use."""
        self._lock = threading.Lock()
        self._loop = self._thread = self._browser = None
        self._pid = None

    def _started(self) -> kaleido.Kaleido:
        if self._browser is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="figure-renderer", daemon=True)
            self._thread.start()
            self._pid = os.getpid()
            try:
                self._browser = self._call(self._open_browser(), START_TIMEOUT_S)
            except Exception as exc:
                self._stop_locked()
                raise PathReviewError(f"the headless browser for figure export could not start ({type(exc).__name__}: {exc}); "
                                     "check that Chromium is installed") from exc
        return self._browser

    async def _open_browser(self) -> kaleido.Kaleido:
        # mathjax=False: no CDN fetch (offline hosts); our figures use no LaTeX.
        browser = kaleido.Kaleido(n=1, timeout=self.timeout_s, mathjax=False)
        await browser.open()
        return browser

    def _call(self, coroutine: Coroutine[Any, Any, Result], timeout_s: float) -> Result:
        assert self._loop is not None, "the renderer's event loop starts before anything is sent to it"
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def _stop_locked(self) -> None:
        loop, thread, browser = self._loop, self._thread, self._browser
        self._loop = self._thread = self._browser = None
        if loop is None or self._pid != os.getpid():
            return
        for closing in ((browser.close(),) if browser is not None else ()) + (_cancel_pending(),):
            try:
                asyncio.run_coroutine_threadsafe(closing, loop).result(10)
            except Exception:  # best effort: the process may be exiting or the browser already gone
                pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
            if not thread.is_alive():
                loop.close()


async def _cancel_pending() -> None:
    """Browser watchdogs and readers still pending on the loop: cancel them so the loop closes cleanly."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_RENDERER = FigureRenderer()
atexit.register(_RENDERER.stop)
os.register_at_fork(after_in_child=_RENDERER.forget_after_fork)


def process_renderer() -> FigureRenderer:
    """The process-wide renderer (one browser per process)."""
    return _RENDERER
