"""The validation images judge the final fine-tune (shrink's, and sparsify's after a one-shot method): a
fine-tune that made the model worse is not kept."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_shrink import _pretrain

from mobileprune import ShrinkConfig, api, load_model, shrink
from mobileprune.sparsify.config import SparsifyConfig
from mobileprune.train.data import open_data
from mobileprune.train.held_out import HeldOutCheck
from mobileprune.train.loop import Trainer


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
