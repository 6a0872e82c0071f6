"""The real pipeline on a tiny generated dataset: it learns, saves, reloads and resumes."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from captioning.bundle import MANIFEST, load_bundle
from captioning.images import load_image_file
from captioning.predictor import CaptionPredictor
from captioning.text import normalize_caption
from tests.support.fixtures import tiny_examples
from training.cli import _parser, config_from_arguments
from training.cli import main as cli_main
from training.config import DEFAULT_BACKBONE, TrainConfig
from training.export import TFLITE_TOLERANCE
from training.modeling.bundle import load_keras_bundle
from training.modeling.encoders import DEFAULT_ENCODER, get_spec
from training.modeling.keras_runtime import KerasEncoder
from training.state import AVERAGE_FILE, CHECKPOINT_FILE, FINAL_FILE, TrainState

pytestmark = pytest.mark.slow


def test_tiny_model_reproduces_its_training_captions(tiny_dataset, tiny_predictor):
    """Proof that training learns: a handful of captions are memorised word for word."""
    root, pairs = tiny_dataset
    images = [load_image_file(root / "Flicker8k_Dataset" / name) for name, _ in pairs]
    results = tiny_predictor.caption_images(images)
    for (name, caption), result in zip(pairs, results, strict=True):
        assert result.best.tokens == tuple(normalize_caption(caption)), name


def test_manifest_records_what_serving_needs(tiny_training_run):
    config, manifest = tiny_training_run
    # Features come from the encoder the service runs (its LiteRT export).
    assert manifest["training"]["features_runtime"] == "litert"
    on_disk = json.loads((config.artifacts_dir / MANIFEST).read_text())
    assert on_disk == manifest
    assert manifest["encoder"]["backbone"] == DEFAULT_ENCODER
    assert manifest["encoder"]["input_size"] == get_spec(DEFAULT_ENCODER).input_size
    assert manifest["vocabulary"]["size"] > 4
    assert manifest["dataset"]["splits"]["test"] == 0
    assert manifest["metrics"]["dev"]["CIDEr"] > 1.0
    assert set(manifest["files"]) >= {"encoder.keras", "decoder.keras", "tokenizer.p"}
    assert manifest["training"]["epochs_run"] == len(manifest["training"]["history"])


def test_history_records_a_falling_training_loss(tiny_training_run):
    # The epoch loss is the per-word mean over the epoch's batches (see run_cross_entropy).
    _, manifest = tiny_training_run
    losses = [record["loss"] for record in manifest["training"]["history"]]
    assert len(losses) >= 2 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_checkpoints_are_kept_in_the_work_folder(tiny_training_run):
    config, manifest = tiny_training_run
    checkpoints = config.work_dir / "checkpoints"
    assert (checkpoints / CHECKPOINT_FILE).is_file()
    assert (checkpoints / FINAL_FILE).is_file()
    assert TrainState.load(checkpoints).epoch == manifest["training"]["epochs_run"]
    assert not list(config.artifacts_dir.glob("*checkpoint*"))


def test_save_load_round_trip_gives_identical_captions(tiny_training_run, tiny_predictor):
    config, _ = tiny_training_run
    reloaded = CaptionPredictor.from_artifacts(config.artifacts_dir)
    images = [image for _, image, _ in tiny_examples()[:6]]
    options = tiny_predictor.search.with_options(beam_size=3, num_captions=2)
    first = tiny_predictor.caption_images(images, options)
    second = reloaded.caption_images(images, options)
    for a, b in zip(first, second, strict=True):
        assert [c.text for c in a.captions] == [c.text for c in b.captions]
        np.testing.assert_allclose(
            [c.log_prob for c in a.captions], [c.log_prob for c in b.captions], atol=1e-3
        )


def test_litert_encoder_matches_keras(tiny_artifacts):
    bundle = load_keras_bundle(tiny_artifacts)
    assert bundle.tflite_encoder is not None, "the LiteRT export is part of the artifacts"
    keras_predictor = CaptionPredictor(bundle, encoder=KerasEncoder(bundle.encoder))
    litert_predictor = CaptionPredictor(bundle)
    pixels = keras_predictor.preprocess([image for _, image, _ in tiny_examples()[:3]])
    a, b = keras_predictor.encode(pixels), litert_predictor.encode(pixels)
    # Float16 weights: features within a couple of percent of their largest value (measured
    # 0.4% on a photo); a wrong layout or weight would be off by ~100%.
    for keras_features, litert_features in ((a.pooled, b.pooled), (a.grid, b.grid)):
        scale = np.abs(keras_features).max()
        assert np.abs(keras_features - litert_features).max() <= TFLITE_TOLERANCE["float16"] * scale


def test_resume_continues_after_the_last_finished_epoch(tiny_dataset, tiny_training_run, tmp_path):
    """An interrupted run (here: one that stopped after its epoch budget) resumes where it was."""
    from dataclasses import replace

    from training.train import train

    config, _ = tiny_training_run
    work = tmp_path / "work"
    first = replace(
        config,
        work_dir=work,
        artifacts_dir=tmp_path / "a1",
        epochs=2,
        export_tflite=False,
        weight_average=0.99,
    )
    train(first)
    assert TrainState.load(work / "checkpoints").epoch == 2
    steps_after_two = _average_updates(work)
    resumed = replace(first, artifacts_dir=tmp_path / "a2", epochs=4, resume=True)
    manifest = train(resumed)
    epochs = [record["epoch"] for record in manifest["training"]["history"]]
    assert epochs == [1, 2, 3, 4]
    # The weight average went on from where it was, not from scratch.
    assert _average_updates(work) == 2 * steps_after_two > 0


def _average_updates(work) -> int:
    with np.load(work / "checkpoints" / AVERAGE_FILE) as stored:
        return int(stored["updates"])


def test_export_command_rewrites_only_the_litert_files(tiny_artifacts, tmp_path):
    import shutil

    from captioning.bundle import DECODER_KERAS, DECODER_STEP_TFLITE, ENCODER_KERAS, ENCODER_TFLITE

    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    (artifacts / DECODER_STEP_TFLITE).unlink()  # as in a bundle from before the decoder step
    manifest = json.loads((artifacts / MANIFEST).read_text())
    del manifest["files"][DECODER_STEP_TFLITE]
    (artifacts / MANIFEST).write_text(json.dumps(manifest))
    keras_files = {n: (artifacts / n).read_bytes() for n in (ENCODER_KERAS, DECODER_KERAS)}

    assert cli_main(["export-tflite", "--artifacts", str(artifacts)]) == 0
    for name, content in keras_files.items():
        assert (artifacts / name).read_bytes() == content, f"{name} was rewritten"
    bundle = load_bundle(artifacts)  # verifies every hash, the new ones included
    assert bundle.tflite_encoder and bundle.tflite_decoder_step
    assert {ENCODER_TFLITE, DECODER_STEP_TFLITE} <= set(bundle.manifest["files"])


def test_caption_command_writes_json_lines(tiny_artifacts, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image, _ in tiny_examples()[:3]:
        image.save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    output = tmp_path / "out.jsonl"
    code = cli_main(
        ["caption", "--artifacts", str(tiny_artifacts), "--output", str(output), str(folder)]
    )
    assert code == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 4
    good = [r for r in records if r["caption"]]
    assert len(good) == 3 and all(isinstance(r["score"], float) and r["score"] < 0 for r in good)
    broken = next(r for r in records if r["image"].endswith("broken.png"))
    assert broken["error"]["code"] == "corrupt_image"


def test_evaluate_command_scores_a_split(tiny_dataset, tiny_artifacts, tmp_path):
    root, _ = tiny_dataset
    code = cli_main(
        [
            "evaluate",
            "--data",
            str(root),
            "--artifacts",
            str(tiny_artifacts),
            "--split",
            "dev",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "metrics_dev.json").read_text())
    assert summary["images"] == len(tiny_examples())
    assert summary["metrics"]["BLEU-4"] > 0.9
    assert (tmp_path / "report_dev.html").read_text().count("<figure>") > 0


def test_evaluate_can_make_its_decoding_settings_the_default(
    tiny_dataset, tiny_artifacts, tmp_path
):
    root, _ = tiny_dataset
    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    argv = ["evaluate", "--data", str(root), "--artifacts", str(artifacts), "--split", "dev"]
    options = ["--length-penalty", "0.75", "--no-repeat-ngram", "2", "--update-manifest"]
    assert cli_main([*argv, *options, "--output", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "metrics_dev.json").read_text())
    assert (summary["length_penalty"], summary["no_repeat_ngram"]) == (0.75, 2)
    manifest = json.loads((artifacts / MANIFEST).read_text())
    assert manifest["decoder"]["length_penalty"] == 0.75
    assert manifest["decoder"]["no_repeat_ngram"] == 2
    assert manifest["metrics"]["dev"]["CIDEr"] == summary["metrics"]["CIDEr"]
    # The service decodes with what was recorded.
    predictor = CaptionPredictor.from_artifacts(artifacts)
    assert (predictor.search.length_penalty, predictor.search.no_repeat_ngram) == (0.75, 2)


def test_cli_reports_bad_input_clearly(tmp_path, caplog):
    assert (
        cli_main(
            [
                "caption",
                "--artifacts",
                str(tmp_path / "none"),
                "--output",
                str(tmp_path / "o"),
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "does not exist" in caplog.text
    assert cli_main(["train", "--data", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 2
    assert "not a Flickr8k folder" in caplog.text


def test_the_configuration_names_the_default_backbone_without_importing_keras() -> None:
    assert DEFAULT_BACKBONE == DEFAULT_ENCODER


def test_command_line_defaults_are_the_training_defaults() -> None:
    """`make train` and `train()` train the same model: the parser's defaults are the fields'."""
    args = _parser().parse_args(["train", "--data", "somewhere"])
    assert config_from_arguments(args) == TrainConfig(data_dir=Path("somewhere"))


def test_command_line_sets_every_field_it_names() -> None:
    argv = ["train", "--data", "d", "--no-tflite", "--encoder-weights", "none", "--resume"]
    argv += ["--self-critical-lr", "1e-4", "--time-budget-minutes", "45", "--mirror-images"]
    config = config_from_arguments(_parser().parse_args(argv))
    assert (config.export_tflite, config.encoder_weights, config.resume) == (False, None, True)
    assert config.self_critical_learning_rate == 1e-4
    assert (config.time_budget_minutes, config.mirror_images) == (45.0, True)
