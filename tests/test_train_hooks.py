"""The training loop's hooks: the order they are called in, stopping at an iteration, stopping on SIGTERM; and the
evaluator validation and `vitseg eval` share, on a case computed by hand."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from vitseg_cli.data.io import write_image
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.evaluate import PairOptions, evaluate_pairs
from vitseg_cli.engine.evaluator import SegEvaluator
from vitseg_cli.engine.hooks import HookBase, TrainerBase
from vitseg_cli.engine.train import TrainOptions, train
from vitseg_cli.engine.train_state import load_state, read_log

from test_train import write_spec


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "data", 4, 0, size=(32, 32))


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", scale=[32, 32], crop_size=[32, 32],
                      warmup_iters=1)


class Recorder(HookBase):
    """Records each call with the trainer's iteration, what log.csv holds then and the saved state's iteration."""

    def __init__(self, out: Path):
        self.out, self.calls = out, []

    def _note(self, point: str) -> None:
        log = self.out / "log.csv"
        rows = [int(r["iter"]) for r in read_log(log)] if log.exists() else None
        state = load_state(self.out / "state.pt")["iteration"] if (self.out / "state.pt").exists() else None
        self.calls.append((point, self.trainer.iter, rows, state))

    def before_train(self):
        self._note("before_train")

    def before_step(self):
        self._note("before_step")

    def after_step(self):
        self._note("after_step")

    def after_train(self):
        self._note("after_train")


def _opts(out: Path, spec_file: Path, synth: Path, **kw) -> TrainOptions:
    return TrainOptions(out=out, spec=str(spec_file), data=synth, device="cpu", quiet=True, seed=1, log_every=1,
                        loggers="none", **kw)


def test_hooks_are_called_in_order_and_the_run_stops_at_k(tmp_path, synth, spec_file):
    out = tmp_path / "run"
    rec = Recorder(out)
    res = train(_opts(out, spec_file, synth, iters=5, stop_at=3, save_every=2, hooks=[rec]), say=lambda m: None)
    assert res.iteration == 3 and not res.interrupted
    # the built-in hooks run first: at after_step k the log already has row k; state.pt is saved every 2 and at
    # the end, before an extra hook's after_train
    assert rec.calls == [
        ("before_train", 0, [], None),
        ("before_step", 0, [], None), ("after_step", 1, [1], None),
        ("before_step", 1, [1], None), ("after_step", 2, [1, 2], 2),
        ("before_step", 2, [1, 2], 2), ("after_step", 3, [1, 2, 3], 2),
        ("after_train", 3, [1, 2, 3], 3),
    ]
    assert load_state(out / "state.pt")["scheduler"]["max_iters"] == 5  # stopped early, the schedule runs to 5


def test_sigterm_stops_at_the_next_iteration_boundary_with_state_saved(tmp_path, synth, spec_file):
    class Terminate(HookBase):
        def after_step(self):
            if self.trainer.iter == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # what timeout, Slurm and k8s send

    out = tmp_path / "run"
    previous = signal.getsignal(signal.SIGTERM)
    res = train(_opts(out, spec_file, synth, iters=6, hooks=[Terminate()]), say=lambda m: None)
    assert res.interrupted and res.iteration == 2
    assert load_state(out / "state.pt")["iteration"] == 2
    assert [int(r["iter"]) for r in read_log(out / "log.csv")] == [1, 2]
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back
    assert not (out / ".vitseg-train.lock").exists()


def test_trainer_base_calls_every_hook_at_every_point_and_honours_a_stop_request():
    calls = []

    class Named(HookBase):
        def __init__(self, name, stop_before=None):
            self.name, self.stop_before = name, stop_before

        def before_train(self):
            calls.append((self.name, "before_train"))

        def before_step(self):
            calls.append((self.name, "before_step", self.trainer.iter))
            if self.trainer.iter == self.stop_before:
                self.trainer.request_stop(interrupted=True)

        def after_step(self):
            calls.append((self.name, "after_step", self.trainer.iter))

        def after_train(self):
            calls.append((self.name, "after_train"))

    class Counting(TrainerBase):
        steps = 0

        def run_step(self):
            calls.append(("step", self.iter))

    trainer = Counting()
    trainer.register_hooks([Named("a"), None, Named("b", stop_before=7)])
    trainer.train(5, 10)
    assert calls == [("a", "before_train"), ("b", "before_train"),
                     ("a", "before_step", 5), ("b", "before_step", 5), ("step", 5),
                     ("a", "after_step", 6), ("b", "after_step", 6),
                     ("a", "before_step", 6), ("b", "before_step", 6), ("step", 6),
                     ("a", "after_step", 7), ("b", "after_step", 7),
                     ("a", "before_step", 7), ("b", "before_step", 7),  # stop asked: no step 7
                     ("a", "after_train"), ("b", "after_train")]
    assert trainer.iter == 7 and trainer.interrupted


def test_evaluator_on_a_hand_computed_case_agrees_with_eval(tmp_path):
    pred = np.array([[0, 1], [1, 2]], np.uint8)
    label = np.array([[0, 1], [2, 255]], np.uint8)
    # by hand (rows label, columns prediction): 0->0 once, 1->1 once, 2->1 once, one pixel ignored.
    # aAcc 2/3; IoU: class 0 1/1, class 1 1/(1+1), class 2 0/1 -> mIoU 0.5; Acc 1, 1, 0 -> mAcc 2/3
    hand = {"aAcc": 2 / 3, "mIoU": 0.5, "mAcc": 2 / 3}
    ev = SegEvaluator(3, 255, ["a", "b", "c"])
    row = ev.process(0, "x", pred, label)
    assert row["labelled_pixels"] == 3 and row["pixel_acc"] == pytest.approx(2 / 3)
    scores = ev.evaluate()
    assert scores.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert scores.headline() == pytest.approx(hand)
    ev.reset()
    assert ev.evaluate().matrix.sum() == 0 and ev.rows == []

    write_image(tmp_path / "pred" / "x.png", pred)
    write_image(tmp_path / "gt" / "x.png", label)
    res = evaluate_pairs(PairOptions(tmp_path / "pred", tmp_path / "gt", num_classes=3, quiet=True))
    assert {k: res.summary[k] for k in hand} == pytest.approx(hand)
    assert res.conf.tolist() == scores.matrix.tolist()
