"""The validation images judge the final fine-tune (shrink's, and sparsify's after a one-shot method): a
fine-tune that made the model worse is not kept, and of one that helped, the best epoch is."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_shrink import _pretrain

from mobileprune import ShrinkConfig, api, load_model, shrink
from mobileprune.reporting.html_report import render_report
from mobileprune.sparsify.config import SparsifyConfig
from mobileprune.train.data import make_loader, open_data
from mobileprune.train.held_out import BestEpoch, HeldOutCheck, judge_by_labels
from mobileprune.train.loop import TrainConfig, Trainer


@pytest.fixture
def trained(image_folder):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    _pretrain(loaded.model, data)
    return loaded, data


def test_the_reference_scores_zero_and_a_changed_model_more(trained):
    loaded, data = trained
    model = loaded.model
    check = HeldOutCheck(data.val, model, use_labels=False, batch_size=5)
    assert check.photos == len(data.val) and check.images == 2 * len(data.val)  # every image and its mirror
    same = check.score(model)
    assert same.loss == pytest.approx(0.0, abs=1e-6) and same.top1 == 1.0
    changed = copy.deepcopy(model)
    with torch.no_grad():  # negated logits: every top-1 flips
        changed.classifier[-1].weight.neg_()
        changed.classifier[-1].bias.neg_()
    flipped = check.score(changed)
    assert flipped.loss > 1.0 and flipped.top1 == 0.0


def test_with_labels_the_score_is_cross_entropy_on_images_and_mirrors(trained):
    loaded, data = trained
    model = loaded.model.eval()
    check = HeldOutCheck(data.val, model, use_labels=True, batch_size=5)
    x = torch.stack([data.val[i][0] for i in range(len(data.val))])
    y = torch.tensor([data.val[i][1] for i in range(len(data.val))])
    with torch.no_grad():
        logits = torch.cat([model(x), model(x.flip(-1))])
    labels = torch.cat([y, y])
    score = check.score(model)
    assert score.loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)
    assert score.top1 == pytest.approx(float((logits.argmax(1) == labels).float().mean()))


def _shrink(trained, **settings):
    loaded, data = trained
    config = ShrinkConfig(
        target=0.5, allocation="uniform", distill=True, batch_size=16, workers=0, reconstruct=False, **settings
    )
    config.train.optimizer, config.train.lr = "sgd", 5.0  # steps that wreck the model
    return shrink(copy.deepcopy(loaded), config, data)


def test_a_fine_tune_that_makes_the_model_worse_is_discarded(trained):
    one_shot = _shrink(trained, epochs=0)
    wrecked = _shrink(trained, epochs=2, retrain_check=False)
    checked = _shrink(trained, epochs=2)

    check = checked.report["retraining"]["check"]
    assert check["kept"] == "before retraining" and check["after"]["loss"] > check["before"]["loss"]
    assert "KL divergence from the unpruned model" in check["measure"]
    assert checked.report["accuracy"]["after_retraining"] is None  # the final accuracy is the one-shot model's
    assert checked.report["retraining"]["steps"] > 0
    final = checked.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in one_shot.model.state_dict().items())
    assert any(not torch.equal(final[k], v) for k, v in wrecked.model.state_dict().items())
    assert "check" not in wrecked.report["retraining"]


def _unlabeled_with_labelled_val(image_folder: Path, root: Path) -> Path:
    """The fixture's training photos flat (no labels), beside its labelled val/ folder."""
    (root / "train").mkdir(parents=True)
    for photo in image_folder.glob("train/*/*.jpg"):
        (root / "train" / f"{photo.parent.name}_{photo.name}").symlink_to(photo)
    (root / "val").symlink_to(image_folder / "val")
    return root


def test_labelled_validation_photos_beside_unlabeled_training_ones_judge_by_their_labels(
    trained, image_folder, tmp_path
):
    loaded, _ = trained
    root = _unlabeled_with_labelled_val(image_folder, tmp_path / "few_labels")
    data = open_data(root, 32, loaded.spec.mean, loaded.spec.std, val_classes=["red", "blue"])
    assert not data.train.labeled and data.val.labeled
    assert {label for path, label in data.val.samples if path.parent.name == "red"} == {0}  # by name, not sorted
    data = open_data(root, 32, loaded.spec.mean, loaded.spec.std)  # the tiny model has no class names
    checked = _shrink((loaded, data), epochs=1)
    check = checked.report["retraining"]["check"]
    assert "cross-entropy to the labels" in check["measure"] and check["kept"] == "before retraining"
    assert judge_by_labels(data, distill=True)
    labelled = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    assert not judge_by_labels(labelled, distill=True) and judge_by_labels(labelled, distill=False)


def _negated_classifier(self, model, steps, **_):
    """A fine-tune certain to make the model worse, whatever the numerics: every logit negated."""
    with torch.no_grad():
        model.classifier[-1].weight.neg_()
        model.classifier[-1].bias.neg_()
    self.steps_done += steps
    return 0.0


def _sparsify(trained, **settings):
    loaded, data = trained
    config = SparsifyConfig(0.5, method="magnitude", batch_size=16, workers=0, **settings)
    return api.sparsify(copy.deepcopy(loaded), config, data)


def test_sparsify_discards_a_masked_fine_tune_that_makes_the_model_worse(trained, monkeypatch):
    one_shot = _sparsify(trained, epochs=0)
    assert one_shot.report.accuracy.after_pruning.top1 == 1.0  # so negated logits are all wrong
    monkeypatch.setattr(Trainer, "train", _negated_classifier)
    wrecked = _sparsify(trained, epochs=2, retrain_check=False)
    checked = _sparsify(trained, epochs=2)

    check = checked.report.retraining["check"]
    assert check["kept"] == "before retraining" and check["after"]["loss"] > check["before"]["loss"]
    assert "cross-entropy to the labels" in check["measure"]  # labelled images, no --distill
    assert checked.report.accuracy.after_retraining is None and checked.report.retraining["steps"] > 0
    final = checked.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in one_shot.model.state_dict().items())
    assert any(not torch.equal(final[k], v) for k, v in wrecked.model.state_dict().items())
    assert wrecked.report.accuracy.after_retraining is not None and "check" not in wrecked.report.retraining


def _scale_classifier(model, factor: float) -> None:
    with torch.no_grad():
        model.classifier[-1].weight.mul_(factor)
        model.classifier[-1].bias.mul_(factor)


def test_the_best_epoch_is_kept_not_the_last(trained):
    loaded, data = trained
    model = copy.deepcopy(loaded.model)
    check = HeldOutCheck(data.val, model, use_labels=True, batch_size=5)
    _scale_classifier(model, 0.01)  # soft logits, all right: sharper ones lower the cross-entropy, negated raise it
    assert check.score(model).top1 == 1.0 and check.score(model).loss > 0.1
    start = copy.deepcopy(model.state_dict())
    best = BestEpoch.start(check, model)
    _scale_classifier(model, 2.0)
    sharper = copy.deepcopy(model.state_dict())
    best.observe(model, 1)
    _scale_classifier(model, -1.0)
    verdict = best.finish(model, 2)  # scores epoch 2 and puts the best weights back

    assert verdict.kept and verdict.epoch == 1 and verdict.after.loss < verdict.before.loss
    assert [e for e, _ in verdict.history] == [1, 2] and verdict.history[1][1] > verdict.before.loss
    assert "epoch 1 of 2" in verdict.message()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sharper.items())

    worse = BestEpoch.start(check, model)  # every epoch worse than before: the weights from before come back
    _scale_classifier(model, -1.0)
    assert not worse.finish(model, 1).kept
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sharper.items())
    assert not any(torch.equal(model.state_dict()[k], v) for k, v in start.items() if "classifier.1" in k)


def test_the_trainer_reports_each_step_of_the_call_and_scoring_keeps_batch_norm_frozen(trained):
    loaded, data = trained
    model = copy.deepcopy(loaded.model)
    check = HeldOutCheck(data.val, model, use_labels=True, batch_size=5)
    trainer = Trainer(make_loader(data.train, 8, True, 0, 0), TrainConfig(lr=1e-4))
    seen, modes = [], []

    def after_step(done: int) -> None:
        check.score(model)  # as BestEpoch does between two steps
        seen.append(done)
        modes.append({m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)})

    trainer.train(model, 5, after_step=after_step)
    assert seen == [1, 2, 3, 4, 5]
    assert all(m == {False} for m in modes)  # frozen batch norm stays frozen after a score


def _two_epochs(factors: tuple[float, float]):
    """A fake fine-tune: the classifier scaled by `factors[0]` after the first epoch, by `factors[1]` after
    the second, reporting each step as the real one does."""

    def train(self, model, steps, after_step=None, **_):
        per_epoch = len(self.loader)
        assert steps == 2 * per_epoch
        for done in range(1, steps + 1):
            if done % per_epoch == 0:
                _scale_classifier(model, factors[done // per_epoch - 1])
            self.steps_done += 1
            if after_step:
                after_step(done)
        return 0.0

    return train


def test_shrink_keeps_its_best_epoch_and_reports_every_epoch(trained, monkeypatch):
    one_shot = _shrink(trained, epochs=0)
    monkeypatch.setattr(Trainer, "train", _two_epochs((1.0, -1.0)))  # epoch 1 = the start
    checked = _shrink(trained, epochs=2)

    check = checked.report["retraining"]["check"]
    assert check["kept"] == "retrained" and check["epoch"] == 1
    assert [h["epoch"] for h in check["history"]] == [1, 2]
    assert check["history"][0]["loss"] == pytest.approx(check["before"]["loss"], abs=1e-5)
    assert check["history"][1]["loss"] > check["before"]["loss"]
    final = checked.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in one_shot.model.state_dict().items())
    page = render_report(checked.report)
    assert "epoch 1 of 2" in page and "data:image/png;base64" in page.split("retrain-check")[1]


def test_sparsify_keeps_its_best_epoch(trained, monkeypatch):
    one_shot = _sparsify(trained, epochs=0)
    monkeypatch.setattr(Trainer, "train", _two_epochs((1.0, -1.0)))  # epoch 1 = the start
    checked = _sparsify(trained, epochs=2)

    check = checked.report.retraining["check"]
    assert check["kept"] == "retrained" and check["epoch"] == 1 and check["after"] == check["before"]
    assert check["history"][1]["loss"] > check["before"]["loss"]
    assert checked.report.accuracy.after_retraining is not None
    final = checked.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in one_shot.model.state_dict().items())


def test_patience_stops_after_that_many_epochs_without_a_better_score(trained):
    loaded, data = trained
    model = copy.deepcopy(loaded.model)
    check = HeldOutCheck(data.val, model, use_labels=True, batch_size=5)
    _scale_classifier(model, 0.01)
    best = BestEpoch.start(check, model, patience=2)
    after_step = best.each_epoch(model, steps=10, per_epoch=1)
    stops = []
    for epoch, factor in enumerate((2.0, 0.9, 1.0, 1.0, 1.0), start=1):  # better, then worse and the same
        _scale_classifier(model, factor)
        stops.append(after_step(epoch))
        if stops[-1]:
            break
    assert stops == [False, False, True] and best.stopped_at == 3
    verdict = best.verdict()
    assert verdict.kept and verdict.epoch == 1 and verdict.best_at == 1
    assert verdict.to_json()["stopped_early_at"] == 3 and "stopped after epoch 3" in verdict.message()
    again = BestEpoch.from_state(check, best.state(), patience=2)  # as a resumed run reads it from its checkpoint
    assert again.verdict() == verdict and again.stopped_at == 3


def test_the_trainer_ends_the_call_when_after_step_says_stop(trained):
    loaded, data = trained
    trainer = Trainer(make_loader(data.train, 8, True, 0, 0), TrainConfig(lr=1e-4))
    trainer.train(copy.deepcopy(loaded.model), 6, after_step=lambda done: done == 2)
    assert trainer.steps_done == 2


def _epochs_then_worse(self, model, steps, after_step=None, **_):
    """A fake fine-tune whose first epoch negates the classifier and later ones leave it, honouring stops."""
    per_epoch = len(self.loader)
    for done in range(1, steps + 1):
        if done == per_epoch:
            _scale_classifier(model, -1.0)
        self.steps_done += 1
        if after_step and after_step(done):
            break
    return 0.0


def test_shrink_with_patience_stops_early_and_keeps_the_model_from_before(trained, monkeypatch, run_cli):
    one_shot = _shrink(trained, epochs=0)
    monkeypatch.setattr(Trainer, "train", _epochs_then_worse)
    stopped = _shrink(trained, epochs=6, patience=2)
    check = stopped.report["retraining"]["check"]
    assert check["stopped_early_at"] == 2 and [h["epoch"] for h in check["history"]] == [1, 2]
    assert check["kept"] == "before retraining"
    per_epoch = stopped.report["retraining"]["steps"] // 2
    assert stopped.report["retraining"]["steps"] == 2 * per_epoch  # 2 of the 6 epochs trained
    final = stopped.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in one_shot.model.state_dict().items())
    with pytest.raises(Exception, match="--patience .*needs --retrain-check"):
        _shrink(trained, epochs=6, patience=2, retrain_check=False)


def test_sparsify_with_patience_stops_early_and_keeps_the_model_from_before(trained, monkeypatch):
    one_shot = _sparsify(trained, epochs=0)
    monkeypatch.setattr(Trainer, "train", _epochs_then_worse)
    stopped = _sparsify(trained, epochs=6, patience=2)
    check = stopped.report.retraining["check"]
    assert check["stopped_early_at"] == 2 and [h["epoch"] for h in check["history"]] == [1, 2]
    assert check["kept"] == "before retraining"
    final = stopped.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in one_shot.model.state_dict().items())
    with pytest.raises(Exception, match="--patience .*needs --retrain-check"):
        _sparsify(trained, epochs=6, patience=2, retrain_check=False)
