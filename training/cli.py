"""Command line: `python -m training {train,evaluate,caption,...}`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captioning.offline import add_caption_options, search_options
from training.config import TrainConfig

if TYPE_CHECKING:
    from captioning.predictor import CaptionPredictor
    from captioning.search_settings import SearchSettings

logger = logging.getLogger("training")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, its default and help taken from the field."""
    types = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if not field.metadata.get("command_line", True):
            continue
        flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
        options: dict[str, Any] = {"dest": field.name, "help": field.metadata["help"]}
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        if field.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = field.default
            options["help"] += " (default: %(default)s)"
        kind = types[field.name]
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = _parse_as(kind)
        parser.add_argument(flag, **options)


def _parse_as(kind: Any) -> Callable[[str], Any]:
    """How a field's annotation reads from the command line; `X | None` takes 'none'."""
    arguments = [a for a in typing.get_args(kind) if a is not type(None)]
    if not arguments:
        return kind
    (inner,) = arguments

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else inner(text)

    parse.__name__ = inner.__name__  # argparse names the type in its error messages
    return parse


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    names = [f.name for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)]
    return TrainConfig(**{name: getattr(args, name) for name in names})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="dataset folder -> artifacts/")
    add_config_arguments(train)

    evaluate = commands.add_parser("evaluate", help="COCO metrics of artifacts on a split")
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    add_caption_options(evaluate)
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
    caption.add_argument("--output", type=Path, required=True, help="JSON lines file")
    add_caption_options(caption)
    _add_concept_commands(commands, evaluate)
    _add_grounding_command(commands)
    return parser


def _add_grounding_command(commands: argparse._SubParsersAction) -> None:
    grounding = commands.add_parser(
        "add-grounding",
        help="fit evidence heads (person, dog, cat, two or more) on an artifacts folder's "
        "encoder and write grounding.json",
    )
    grounding.add_argument("--data", type=Path, required=True, help="Flickr8k folder")
    grounding.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    extra_help = "labels.tsv (file, person, dog, cat as 0/1) of more photos to train on, e.g. "
    extra_help += "../shared/openworld/labels.tsv: negatives Flickr8k lacks"
    grounding.add_argument("--extra-labels", type=Path, help=extra_help)
    grounding.add_argument(
        "--extra-photos",
        type=Path,
        default=None,
        help="their folder (default: the labels file's folder)",
    )
    grounding.add_argument(
        "--extra-weight", type=float, default=None, help="each extra photo counts as this many"
    )
    grounding.add_argument("--l2", type=float, default=None, help="L2 penalty (standardised)")
    grounding.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="softmax temperature of the class groups (default: fitted on train)",
    )
    grounding.add_argument(
        "--no-scenery",
        action="store_true",
        help="fit no heads for settings (ball, grass, water, snow; labelled from the captions), "
        "whose phrases are otherwise cut from a caption where their evidence is missing",
    )
    grounding.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    grounding.add_argument(
        "--cache", type=Path, default=None, help="keep the photos' encoder outputs here"
    )


def _run_grounding_command(args: argparse.Namespace) -> dict:
    from training import grounding

    return grounding.add_grounding(
        args.artifacts,
        args.data,
        extra_labels=args.extra_labels,
        extra_photos=args.extra_photos,
        wordnet_dir=args.wordnet,
        cache=args.cache,
        specs=grounding.DEFAULT_HEADS if args.no_scenery else grounding.SHIPPED_HEADS,
        l2=grounding.DEFAULT_L2 if args.l2 is None else args.l2,
        extra_weight=(
            grounding.DEFAULT_EXTRA_WEIGHT if args.extra_weight is None else args.extra_weight
        ),
        temperature=args.temperature,
    )


def _add_concept_commands(
    commands: argparse._SubParsersAction, evaluate: argparse.ArgumentParser
) -> None:
    """`evaluate-open`, `add-concepts`, and the concept threshold of `evaluate`."""
    open_world = commands.add_parser(
        "evaluate-open",
        help="share of photos named nXXXXXXXX_label.ext whose caption names the subject",
    )
    open_world.add_argument(
        "path", type=Path, help="folder, e.g. ../shared/openworld/imagenet-sample"
    )
    open_world.add_argument("--output", type=Path, default=Path("work/eval-open"))
    add_caption_options(open_world)
    for command in (evaluate, open_world):
        command.add_argument(
            "--concept-threshold", type=float, default=None, help="default: the manifest's"
        )
    open_world.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    labels_help = "TSV of file, person, dog, cat (0/1) and a reference caption: adds phantom "
    labels_help += "person/dog/cat rates, the grounded share and CIDEr-D"
    open_world.add_argument("--labels", type=Path, help=labels_help)

    concepts = commands.add_parser(
        "add-concepts",
        help="give an artifacts folder the encoder's ImageNet head and concepts.json",
    )
    concepts.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    concepts.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    concepts.add_argument("--threshold", type=float, default=None, help="tag/caption threshold")
    forms_help = "caption text to count noun forms (bread, jeans) and verb frames in: "
    concepts.add_argument("--data", type=Path, help=forms_help + "Flickr8k's training captions")
    concepts.add_argument(
        "--text-corpora", type=Path, help=forms_help + "a folder laid out as ../shared/caption-text"
    )


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


def _run_concept_command(args: argparse.Namespace) -> dict:
    if args.command == "evaluate-open":
        from training.open_world import evaluate_open_world, read_labels
        from training.wordnet import WordNet

        labels = read_labels(args.labels) if args.labels is not None else None
        predictor = _predictor(args)
        return evaluate_open_world(
            predictor, args.path, _search_settings(predictor, args), args.output,
            WordNet.load(args.wordnet), labels,
        )  # fmt: skip
    from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD
    from training.concepts import add_concepts
    from training.noun_forms import caption_text

    threshold = DEFAULT_CONCEPT_THRESHOLD if args.threshold is None else args.threshold
    captions, counted_in = caption_text(args.data, args.text_corpora)
    return add_concepts(args.artifacts, args.wordnet, threshold, captions, counted_in)["concepts"]


def _predictor(args: argparse.Namespace) -> CaptionPredictor:
    """The artifacts' predictor with the command's runtime and concept threshold, if it has them."""
    from captioning.bundle import load_bundle
    from captioning.predictor import CaptionPredictor
    from captioning.runtime import DEFAULT_RUNTIME, RuntimeOptions

    runtime = DEFAULT_RUNTIME
    if getattr(args, "decoder_runtime", None):
        runtime = RuntimeOptions(decoder_runtime=args.decoder_runtime)
    return CaptionPredictor(
        load_bundle(args.artifacts),
        runtime=runtime,
        concept_threshold=getattr(args, "concept_threshold", None),
    )


def _search_settings(predictor: CaptionPredictor, args: argparse.Namespace) -> SearchSettings:
    """The model's search settings with the options this command has (None: the model's)."""
    return predictor.search.with_options(
        **search_options(args),
        length_penalty=getattr(args, "length_penalty", None),
        no_repeat_ngram=getattr(args, "no_repeat_ngram", None),
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported here so that `--help` answers without loading TensorFlow.
    from captioning.bundle import ArtifactError
    from training.data import DatasetError

    try:
        if args.command == "train":
            from training.train import train

            config = config_from_arguments(args)
            manifest = train(config)
            print(json.dumps(manifest["metrics"], indent=2))
        elif args.command == "evaluate":
            from training.evaluate import evaluate_split

            predictor = _predictor(args)
            summary = evaluate_split(
                predictor,
                args.data,
                args.split,
                _search_settings(predictor, args),
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
            from captioning.decoder_step import DecoderWeights
            from training.export import export_decoder_step, export_tflite
            from training.modeling.bundle import load_keras_bundle

            # The Keras files stay byte for byte as they are: only the exports are (re)written.
            bundle = load_keras_bundle(args.artifacts)
            exports = {
                ENCODER_TFLITE: export_tflite(bundle.encoder),
                DECODER_STEP_TFLITE: export_decoder_step(DecoderWeights.from_model(bundle.decoder)),
            }
            add_files(args.artifacts, exports)
        elif args.command in ("evaluate-open", "add-concepts"):
            print(json.dumps(_run_concept_command(args), indent=2))
        elif args.command == "add-grounding":
            print(json.dumps(_run_grounding_command(args), indent=2))
        else:
            from training.evaluate import write_caption_jsonl

            predictor = _predictor(args)
            write_caption_jsonl(
                predictor, args.paths, args.output, _search_settings(predictor, args)
            )
    except (ArtifactError, DatasetError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
