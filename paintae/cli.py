"""Command line: `python -m paintae train|evaluate|denoise|rank|reproduce|info`.

Each command prints its results and shows progress bars on long work. Errors in user input end
with a one-line message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paintae import anomaly, checkpoints, config, data, denoise, experiments, images, metrics
from paintae.models import MODEL_SPECS
from paintae.noise import NOISE_KINDS, add_noise
from paintae.runs import RunSettings, denoising_metrics, finish_run, prepare_run
from paintae.trainer import (
    EpochEvent,
    StepEvent,
    TrainConfig,
    TrainingError,
    evaluate_loss,
    train,
)

logger = logging.getLogger(__name__)

FAMILY_OF_TASK = {"reconstruct": "reconstruction", "denoise": "denoising", "anomaly": "anomaly"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paintae", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("train", help="train a model and save a checkpoint")
    fit.add_argument(
        "--task",
        choices=list(FAMILY_OF_TASK),
        default="reconstruct",
        help="reconstruct (MLP family), denoise, or anomaly (default: reconstruct)",
    )
    fit.add_argument(
        "--model", choices=list(MODEL_SPECS), default="mlp", help="model name (default: mlp)"
    )
    fit.add_argument(
        "--dataset",
        choices=["fashion-mnist", "paintings"],
        default="fashion-mnist",
        help="training data (default: fashion-mnist)",
    )
    fit.add_argument("--folder", help="painting folder for --dataset paintings")
    fit.add_argument("--latent", type=int, help="latent size (default: the model's)")
    fit.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="square image size in pixels (default: 28 for Fashion-MNIST, 256 else)",
    )
    fit.add_argument(
        "--crop",
        type=int,
        default=64,
        help="training crop in pixels for conv models on paintings; 0 = whole images (default: 64)",
    )
    fit.add_argument(
        "--crops-per-epoch", type=int, default=512, help="random crops per epoch (default: 512)"
    )
    fit.add_argument("--train-limit", type=int, help="use at most this many training images")
    fit.add_argument(
        "--download",
        action="store_true",
        help="download Fashion-MNIST when it is missing (needs internet)",
    )
    _add_training_options(fit)
    fit.add_argument("--name", required=True, help="checkpoint name (letters, digits, . _ -)")
    fit.add_argument("--out", type=Path, help="checkpoint folder (default: user folder)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on its test data")
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument("--normal", type=Path, help="folder of normal paintings (anomaly)")
    evaluate.add_argument("--anomalous", type=Path, help="folder of anomalous paintings")

    clean = commands.add_parser("denoise", help="denoise one image file and write a PNG")
    clean.add_argument("checkpoint", type=Path)
    clean.add_argument("image", type=Path)
    clean.add_argument("--out", type=Path, required=True, help="output PNG path")
    clean.add_argument(
        "--add-noise",
        type=float,
        default=0.0,
        help="add noise of this level first and report PSNR (default: 0, none)",
    )
    clean.add_argument("--noise", choices=NOISE_KINDS, default="gaussian")
    clean.add_argument("--seed", type=int, default=0)

    ranking = commands.add_parser("rank", help="rank a folder of paintings by anomaly score")
    ranking.add_argument("checkpoint", type=Path)
    ranking.add_argument("folder", type=Path)
    ranking.add_argument("--csv", type=Path, help="write the ranking as CSV here")
    ranking.add_argument("--k", type=float, help="threshold = mean + k * std of normal errors")

    again = commands.add_parser("reproduce", help="rerun the reference experiments")
    again.add_argument(
        "--out",
        type=Path,
        default=Path("docs/results.md"),
        help="Markdown file for the table (default: docs/results.md)",
    )
    again.add_argument(
        "--only",
        nargs="*",
        choices=[e.key for e in experiments.EXPERIMENTS],
        help="run only these experiments",
    )
    again.add_argument(
        "--quick",
        action="store_true",
        help="1 epoch on small subsets: checks the pipeline, figures meaningless",
    )
    again.add_argument(
        "--max-epochs",
        type=int,
        help="cap the reference-design runs at this many epochs (default: no cap)",
    )

    info = commands.add_parser("info", help="print a checkpoint's metadata as JSON")
    info.add_argument("checkpoint", type=Path)

    for sub in (fit, evaluate, ranking, again):
        sub.add_argument("--data-root", help=f"data root (default: ${config.DATA_ENV})")
    return parser


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument(
        "--noise",
        choices=NOISE_KINDS,
        default="gaussian",
        help="noise kind for --task denoise (default: gaussian)",
    )
    parser.add_argument(
        "--noise-level", type=float, default=0.2, help="noise level in [0, 1] (default: 0.2)"
    )
    parser.add_argument("--max-seconds", type=float, help="stop training after this many seconds")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", help="cpu, cuda or auto (default: auto)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "denoise": cmd_denoise,
        "rank": cmd_rank,
        "reproduce": cmd_reproduce,
        "info": cmd_info,
    }
    try:
        return handlers[args.command](args)
    except (
        IsADirectoryError,
        ValueError,
        FileNotFoundError,
        NotADirectoryError,
        FileExistsError,
        checkpoints.CheckpointError,
        images.ImageLoadError,
        TrainingError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def cmd_train(args: argparse.Namespace) -> int:
    root = config.data_root(args.data_root)
    family = FAMILY_OF_TASK[args.task]
    size = args.image_size or (28 if args.dataset == "fashion-mnist" else 256)
    settings = RunSettings(
        family=family,
        model=args.model,
        dataset=args.dataset,
        data_root=str(root) if root else None,
        painting_folder=args.folder,
        image_size=size,
        latent=args.latent,
        crop=args.crop or None,
        crops_per_epoch=args.crops_per_epoch,
        train_limit=args.train_limit,
        download=args.download,
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            schedule=args.schedule,
            noise_kind=args.noise,
            noise_level=args.noise_level,
            max_seconds=args.max_seconds,
            seed=args.seed,
            device=args.device,
        ),
    )
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise NotADirectoryError(f"--out {args.out} is a file: give a folder for the checkpoint.")
    target = checkpoints.checkpoint_path(args.name, args.out)
    if target.exists() and not args.overwrite:
        raise FileExistsError(
            f"Checkpoint {target} already exists; pass --overwrite or a new name."
        )
    prepared = prepare_run(settings)
    bar = tqdm(total=len(prepared.train_data) * args.epochs, unit="img", desc="training")

    def show(event: StepEvent | EpochEvent) -> None:
        if isinstance(event, StepEvent):
            bar.n = min(bar.total, event.step * args.batch_size)
            bar.set_postfix(loss=f"{event.loss:.5f}", refresh=False)
            bar.refresh()
        else:
            val = "-" if event.val_loss is None else f"{event.val_loss:.6f}"
            bar.write(f"epoch {event.epoch}: train {event.train_loss:.6f}  val {val}")

    result = train(
        prepared.model, prepared.train_data, prepared.val_data, settings.train, on_event=show
    )
    bar.close()
    metadata = finish_run(prepared, result)
    path = checkpoints.save_checkpoint(target, prepared.model, metadata, overwrite=args.overwrite)
    print(json.dumps(metadata["test_metrics"], indent=2))
    print(f"saved {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, metadata = checkpoints.load_checkpoint(checkpoints.resolve(args.checkpoint))
    if metadata.get("family") == "anomaly" or args.normal or args.anomalous:
        if not (args.normal and args.anomalous):
            raise ValueError("Anomaly checkpoints need --normal and --anomalous painting folders.")
        size = metadata.get("data", {}).get("image_size", 256)
        normal_set = data.load_painting_folder(args.normal)
        trained = set(metadata.get("data", {}).get("train_files") or [])
        overlap = sum(path.name in trained for path in normal_set.paths)
        if overlap:
            logger.warning(
                "%d of the %d normal paintings in %s were used to train this checkpoint, so they "
                "score as more normal than new paintings would; the AUROC below is optimistic. "
                "Use a folder of held-out paintings for a fair figure.",
                overlap,
                len(normal_set),
                args.normal,
            )
        normal = data.resize_square(normal_set.images, size)
        odd = data.resize_square(data.load_painting_folder(args.anomalous).images, size)
        options = anomaly.score_kwargs(metadata.get("anomaly", {}))
        scores = np.concatenate(
            [
                anomaly.score_images(model, x, keep_maps=False, **options).scores
                for x in (normal, odd)
            ]
        )
        labels = np.concatenate([np.zeros(len(normal)), np.ones(len(odd))])
        point, low, high = metrics.bootstrap_auroc(scores, labels)
        threshold = metadata.get("anomaly", {}).get("threshold", float(np.median(scores)))
        report = metrics.binary_report(scores, labels, threshold)
        print(
            json.dumps(
                {
                    "auroc": point,
                    "auroc_95_interval": [low, high],
                    "threshold": threshold,
                    **report,
                },
                indent=2,
            )
        )
        return 0
    saved = dict(metadata.get("train_config", {}))
    train_config = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig().__dict__})
    dataset = metadata.get("data", {}).get("dataset")
    if dataset != "fashion-mnist":
        raise ValueError("Only Fashion-MNIST checkpoints can be re-evaluated without folders.")
    test_x, _ = data.load_fashion_mnist("test", config.data_root(args.data_root))

    figures = {"test_mse": evaluate_loss(model, test_x, train_config)}
    if train_config.task == "denoise":
        figures.update(denoising_metrics(model, test_x, train_config))
    print(json.dumps(figures, indent=2))
    return 0


def write_atomic(path: Path, content: bytes) -> None:
    """Write `content` to a temporary file beside `path`, then rename it into place."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name for the output.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(content)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def cmd_denoise(args: argparse.Namespace) -> int:
    if args.out.resolve() == args.image.resolve():
        raise ValueError(f"--out {args.out} is the input image; choose another output file.")
    model, metadata = checkpoints.load_checkpoint(checkpoints.resolve(args.checkpoint))
    clean = images.to_tensor(images.load_image(args.image))
    noisy = clean
    if args.add_noise > 0:
        noisy = add_noise(clean, args.noise, args.add_noise, seed=args.seed)
    output = denoise.denoise_image(model, noisy)
    buffer = io.BytesIO()
    images.to_pil(output).save(buffer, format="PNG")
    write_atomic(args.out, buffer.getvalue())
    if args.add_noise > 0:
        print(
            f"PSNR noisy {metrics.psnr(noisy, clean).item():.2f} dB, "
            f"denoised {metrics.psnr(output, clean).item():.2f} dB"
        )
    print(f"wrote {args.out}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    model, metadata = checkpoints.load_checkpoint(checkpoints.resolve(args.checkpoint))
    stats = metadata.get("anomaly")
    if not stats:
        raise ValueError(
            f"{args.checkpoint} is not an anomaly checkpoint (no threshold statistics)."
        )
    if args.csv is not None and args.csv.is_dir():
        raise IsADirectoryError(f"--csv {args.csv} is a folder: give a file name for the CSV.")
    args.folder = args.folder.resolve()
    paintings = data.load_painting_folder(args.folder)  # logs a warning per skipped file
    size = metadata.get("data", {}).get("image_size", 256)
    batch = data.resize_square(paintings.images, size)
    bar = tqdm(total=len(batch), unit="img", desc="scoring")
    scores = anomaly.score_images(
        model,
        batch,
        keep_maps=False,
        **anomaly.score_kwargs(stats),
        progress=lambda done, total: bar.update(done - bar.n),
    ).scores
    bar.close()
    threshold = anomaly.threshold_from_statistics(stats, args.k)
    names = [str(p.relative_to(args.folder)) for p in paintings.paths]
    ranked = anomaly.rank(scores, names, threshold)
    for item in ranked:
        flag = "ANOMALY" if item.flagged else ""
        print(f"{item.rank:4d}  {item.score:10.6f}  {flag:7s}  {item.name}")
    if args.csv:
        write_atomic(args.csv, anomaly.ranking_csv(ranked).encode())
        print(f"wrote {args.csv}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    root = config.data_root(args.data_root)
    if root is None:
        raise ValueError(f"Set ${config.DATA_ENV} or --data-root to the folder with the real data.")
    rows = experiments.reproduce(
        root,
        quick=args.quick,
        max_epochs=args.max_epochs,
        only=args.only,
        progress=lambda message: print(message, flush=True),
    )
    table = experiments.rows_to_markdown(rows)
    print(table)
    write_atomic(args.out, table.encode())
    print(f"wrote {args.out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    metadata = checkpoints.read_metadata(checkpoints.resolve(args.checkpoint))
    print(json.dumps(metadata, indent=2))
    return 0
