"""Which running trials belong to dead workers: those whose heartbeat stopped, and those that never beat.

Optuna's RDBStorage calls a trial stale only when its last heartbeat is older than the grace
period. A worker killed after creating its trial (RUNNING) and before the trial's first heartbeat
(a few milliseconds while Optuna samples the trial's parameters) leaves a trial with no heartbeat
at all, which no worker ever fails: the study then waits for it forever, since the exact-N gate
counts it as running. ``storage.crashbench`` showed this; ``StaleTrialStorage`` closes it.
"""

from __future__ import annotations

import time

from optuna.storages import RDBStorage
from optuna.storages._rdb import models  # Optuna's own table definitions (optuna>=5)
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState


class StaleTrialStorage(RDBStorage):
    """An RDBStorage whose stale trials also include RUNNING trials that never beat.

    Such a trial is stale once this process has seen it without a heartbeat for the grace period,
    timed on this process's own clock: the workers' clocks, and the trial's start time written by
    another machine, need not agree with it. A live worker beats its trial as soon as Optuna's
    ``ask`` returns, long before the grace period (180 s by default) is over.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # study id -> trial id -> when this process first saw the trial RUNNING without a beat
        self._unbeaten_since: dict[int, dict[int, float]] = {}

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials (last beat too old), and those without a beat for the grace period."""
        stale = super()._get_stale_trial_ids(study_id)
        now = time.monotonic()
        # forget trials that have since beaten or ended; remember when each unbeaten one was first seen
        known = self._unbeaten_since.get(study_id, {})
        unbeaten = {i: known.get(i, now) for i in self._running_without_beat(study_id)}
        self._unbeaten_since[study_id] = unbeaten
        assert self.heartbeat_interval is not None
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        return stale + [i for i, seen in unbeaten.items() if now - seen > grace and i not in stale]

    def _running_without_beat(self, study_id: int) -> list[int]:
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        with _create_scoped_session(self.scoped_session) as session:
            rows = (
                session.query(trial.trial_id)
                .outerjoin(beat, beat.trial_id == trial.trial_id)
                .filter(
                    trial.study_id == study_id, trial.state == TrialState.RUNNING, beat.trial_heartbeat_id.is_(None)
                )
                .all()
            )
        return [row[0] for row in rows]
