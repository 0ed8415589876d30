"""The recipe DataModules take the data-source settings of RecipeDataModule through ``**kwargs`` (documented once):
``polyrank fit`` must still see, default and document every one of them, and the checkpoint's hyper-parameters
must still record them all."""

from __future__ import annotations

import inspect

import pytest

from polyrank.domains.text.training.data import FirstDataModule, PointwiseDataModule, RecipeDataModule
from polyrank.domains.text.training.grpo_recipes import BinaryRelevanceDataModule, SetwiseDataModule

SOURCE = [n for n in inspect.signature(RecipeDataModule.__init__).parameters if n != "self"]
BATCH = {FirstDataModule: 4, PointwiseDataModule: 8, SetwiseDataModule: 2, BinaryRelevanceDataModule: 4}


@pytest.mark.parametrize("cls", list(BATCH), ids=lambda c: c.__name__)
def test_cli_sees_and_documents_every_setting(cls):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    actions = {a.dest[len("data."):]: a for a in parser._actions if a.dest.startswith("data.")}
    own = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "kwargs")]
    assert set(SOURCE) | set(own) <= set(actions)
    assert all(actions[n].help for n in set(SOURCE) | set(own))  # the Args: line of the class that declares it
    defaults = parser.get_defaults().data
    assert defaults.batch_size == BATCH[cls] and defaults.format == "beir" and defaults.depth == 100


@pytest.mark.parametrize("cls", list(BATCH), ids=lambda c: c.__name__)
def test_hparams_record_every_setting(cls):
    module = cls(path="p", depth=7, seed=3, val_queries=1)
    assert set(SOURCE) <= set(module.hparams)
    assert (module.hparams.path, module.hparams.depth, module.hparams.seed) == ("p", 7, 3)
    assert module.hparams.batch_size == BATCH[cls]
    with pytest.raises(TypeError):
        cls("beir")  # settings are keyword-only: a positional value cannot land on the wrong one
