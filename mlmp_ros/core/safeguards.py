"""Budgets and continual-adaptation safeguards, hooked into a method's adaptation loop.

An :class:`AdaptationControl` attached to a :class:`~mlmp_ros.core.methods.Method`
(``method.control``) decides, per frame and per step:

- ``adaptation.every``: adapt on every Nth frame only (the others are predicted with
  the newest adapted weights);
- ``adaptation.budget_ms``: no step starts that would pass the budget, judged from the
  measured time of the previous steps (a moving average); the first step of a stream
  always runs, to be measured;
- ``adaptation.plateau``: a frame's steps stop when the loss improved by less than that
  fraction of itself over the last step;
- WATT runs its own loop (M rounds of L steps per template, core/methods/pseudo.py):
  the budget applies to each of its steps the same way, and the plateau compares the
  mean losses of successive rounds (see ``WATT.adapt``);
- safeguards (``adaptation.safeguards``), each off by default:

  * ``reliable_e0`` (EATA, Niu et al. 2022) is applied inside the entropy loss;
  * ``ensemble_alpha`` (ROID's weight ensembling, Marsden et al. 2024): after every
    step ``theta <- a * theta + (1 - a) * theta_source``;
  * ``collapse`` (SAR, Niu et al. 2023, resets when its entropy moving average
    collapses): moving averages (momentum 0.9) of the effective number of predicted
    queries ``exp(H(histogram))`` and of the mean prediction entropy divided by ``ln Q``;
    a collapse is the first falling below ``collapse_ratio`` times its value three
    observations after the last reset, or the second below ``collapse_entropy``;
  * ``drift`` (RDumb++-like, Press et al. 2023): the mean patch token before the first
    LayerNorm (patch embedding + position: source weights, never adapted) is compared
    with the previous frame's; a change above ``drift_factor`` times its moving average
    (after 5 frames) is a drift.

  Collapse and drift resets apply in continual mode (episodic starts every adaptation
  from the source anyway), next to ``reset_every``; ``Method.reset_reasons`` counts
  resets by reason (periodic, collapse, drift, manual).

Under the ``async`` schedule (core/schedule.py) the adaptation thread calls
``begin_frame``/``before_step``/``after_step`` and the prediction thread ``observe``;
the shared state is guarded by a lock.

:class:`ControlOwner` is the one place a model's control is made and given to a method.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .config import AdaptationConfig

if TYPE_CHECKING:
    from .methods import Method

EMA = 0.9
COLLAPSE_WARMUP = 3
DRIFT_WARMUP = 5
STEP_EMA = 0.7


class AdaptationControl:
    """Per-frame and per-step decisions for one method (see module docs)."""

    def __init__(self, adaptation: AdaptationConfig, clock: Callable[[], float] = time.perf_counter):
        self.adaptation = adaptation
        self.clock = clock
        self.lock = threading.Lock()
        self.frames_seen = 0
        self.frames_adapted = 0
        self.steps_total = 0
        self.step_seconds_total = 0.0
        self.step_time: float | None = None  # moving average of one step's seconds
        self.stops = {"steps": 0, "budget": 0, "plateau": 0}
        self.generation = 0  # +1 at every reset; observations of older weights are ignored
        self._t_frame = self._t_step = 0.0
        self._stopped = ""
        self._reset_observations()
        self._drift_mean: torch.Tensor | None = None
        self._drift_ema: float | None = None
        self._drift_n = 0
        self._drifted = False
        self.last_drift_score = 0.0

    def _reset_observations(self) -> None:
        self._observations = 0
        self._ema_classes: float | None = None
        self._ema_entropy: float | None = None
        self._ref_classes: float | None = None
        self._collapsed = False

    @property
    def safeguards(self):
        return self.adaptation.safeguards

    # ------------------------------------------------------------- per frame
    def begin_frame(self, batch) -> bool:
        """Called for every frame the method could adapt on; True: adapt on it."""
        if self.safeguards.drift:
            self._update_drift(batch)
        n = self.frames_seen
        self.frames_seen += 1
        if n % max(1, self.adaptation.every):
            return False
        self.frames_adapted += 1
        if self._stopped:
            self.stops[self._stopped] += 1
        self._stopped = "steps"
        return True

    def reset_reason(self) -> str:
        """'collapse' or 'drift' when a continual adaptation should start from the source."""
        with self.lock:
            if self.safeguards.collapse and self._collapsed:
                return "collapse"
        if self.safeguards.drift and self._drifted:
            self._drifted = False
            return "drift"
        return ""

    def on_reset(self) -> None:
        with self.lock:
            self.generation += 1
            self._reset_observations()
        self._drifted = False

    # -------------------------------------------------------------- per step
    def before_step(self, method, index: int, losses: list) -> bool:
        """False: the frame's remaining steps do not start (budget or plateau)."""
        now = self.clock()
        if index == 0:
            self._t_frame = now
        if len(losses) >= 2 and self.plateau_stop(float(losses[-2]), float(losses[-1])):
            return False
        budget = self.adaptation.budget_ms / 1000.0
        if budget > 0 and self.step_time is not None and (now - self._t_frame) + self.step_time > budget:
            self._stopped = "budget"
            return False
        self._t_step = self.clock()
        return True

    def plateau_stop(self, previous: float, last: float) -> bool:
        """True (and the frame counted as stopped by the plateau) when ``last`` improved on
        ``previous`` by less than ``adaptation.plateau`` times ``|previous|``; off at 0."""
        plateau = self.adaptation.plateau
        if plateau > 0 and previous - last < plateau * abs(previous):
            self._stopped = "plateau"
            return True
        return False

    def after_step(self, method) -> None:
        dt = self.clock() - self._t_step
        self.step_time = dt if self.step_time is None else STEP_EMA * self.step_time + (1 - STEP_EMA) * dt
        self.steps_total += 1
        self.step_seconds_total += dt
        alpha = self.safeguards.ensemble_alpha
        if alpha < 1.0:
            method.blend_with_source(alpha)

    # ----------------------------------------------------------- observation
    @torch.no_grad()
    def observe(self, window_logits: torch.Tensor, generation: int | None = None) -> None:
        """Collapse statistics from a prediction's window logits (N, Q, h, w)."""
        if not self.safeguards.collapse:
            return
        logits = window_logits[:, :, ::4, ::4].float()
        q = logits.shape[1]
        probs = logits.softmax(1)
        ent = float(-(probs * probs.clamp_min(1e-12).log()).sum(1).mean()) / math.log(max(q, 2))
        hist = torch.bincount(logits.argmax(1).reshape(-1), minlength=q).float()
        hist = hist / hist.sum()
        classes = math.exp(float(-(hist * hist.clamp_min(1e-12).log()).sum()))
        with self.lock:
            if generation is not None and generation != self.generation:
                return  # a prediction with weights from before the last reset
            if self._ema_classes is None:
                self._ema_classes, self._ema_entropy = classes, ent
            else:
                self._ema_classes = EMA * self._ema_classes + (1 - EMA) * classes
                self._ema_entropy = EMA * self._ema_entropy + (1 - EMA) * ent
            self._observations += 1
            if self._observations == COLLAPSE_WARMUP:
                self._ref_classes = self._ema_classes
            if self._observations >= COLLAPSE_WARMUP:
                g = self.safeguards
                if self._ema_classes < g.collapse_ratio * self._ref_classes or self._ema_entropy < g.collapse_entropy:
                    self._collapsed = True

    @torch.no_grad()
    def _update_drift(self, batch) -> None:
        if getattr(batch, "z_pre", None) is not None:
            stats = batch.z_pre.float().mean(dim=(0, 1))
        else:
            x = batch.x.float()
            stats = torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))])
        if self._drift_mean is not None and self._drift_mean.shape == stats.shape:
            d = float((stats - self._drift_mean).norm())
            self.last_drift_score = d / self._drift_ema if self._drift_ema else 0.0
            if self._drift_n >= DRIFT_WARMUP and self._drift_ema and d > self.safeguards.drift_factor * self._drift_ema:
                self._drifted = True
            else:
                self._drift_ema = d if self._drift_ema is None else EMA * self._drift_ema + (1 - EMA) * d
            self._drift_n += 1
        self._drift_mean = stats

    # ------------------------------------------------------------- reporting
    def stats(self) -> dict:
        with self.lock:
            return {
                "frames_seen": self.frames_seen,
                "frames_adapted": self.frames_adapted,
                "steps": self.steps_total,
                "step_ms": None if self.step_time is None else 1000.0 * self.step_time,
                "step_seconds": self.step_seconds_total,
                "stops": dict(self.stops),
                "collapse_classes_ema": self._ema_classes,
                "collapse_entropy_ema": self._ema_entropy,
                "drift_score": self.last_drift_score,
            }


class PredictionObserver:
    """A method's control while it only predicts (the prediction side under ``async``): its
    predictions go to the collapse check of the control the adaptation side steps with, tagged with
    the reset generation of the weights that made them (``generation()``)."""

    def __init__(self, control: AdaptationControl, generation: Callable[[], int]):
        self.control = control
        self.generation = generation

    def observe(self, window_logits: torch.Tensor) -> None:
        self.control.observe(window_logits, generation=self.generation())

    def on_reset(self) -> None:
        pass


class ControlOwner:
    """The one owner of a model's :class:`AdaptationControl`: makes it, and is the one place that
    sets a method's ``control`` (the method that adapts steps with it; under ``async`` the
    prediction side's method gets a :class:`PredictionObserver` of it)."""

    def __init__(self, adaptation: AdaptationConfig):
        self.control = AdaptationControl(adaptation)

    def steer(self, method: Method) -> None:
        """``method`` adapts under the control (budgets, safeguards, resets)."""
        self._give(method, self.control)

    def observe_only(self, method: Method, generation: Callable[[], int]) -> None:
        """``method`` only predicts; its predictions feed the control's collapse check."""
        self._give(method, PredictionObserver(self.control, generation))

    @staticmethod
    def _give(method: Method, control: AdaptationControl | PredictionObserver) -> None:
        method.control = control
