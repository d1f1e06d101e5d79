"""Train page: choose a model and data in the sidebar, watch it train, then save it."""

from __future__ import annotations

import streamlit as st

from paintae import config, data, jobs, ui, workbench
from paintae.jobs import JobLimitError
from paintae.models import FAMILIES, MODEL_SPECS, MODELS_BY_FAMILY
from paintae.noise import NOISE_KINDS
from paintae.runs import RunSettings
from paintae.trainer import TrainConfig

FASHION, FOLDER, UPLOAD = "Fashion-MNIST", "Painting folder", "Uploaded paintings"
FAMILY_LABELS = {
    "reconstruction": "reconstruction (MLP)",
    "denoising": "denoising",
    "anomaly": "anomaly detection",
}
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)

ui.setup_page("Train", "Train an autoencoder in the background; the curves update every second.")
root = config.data_root()

# -- settings --------------------------------------------------------------------------------
sidebar = st.sidebar
family = ui.choose(
    sidebar, "Model family", {FAMILY_LABELS[f]: f for f in FAMILIES}, key="train_family"
)
model_name = sidebar.selectbox("Model", MODELS_BY_FAMILY[family], key=f"train_model_{family}")
spec = MODEL_SPECS[model_name]
sidebar.caption(f"{spec.design} design: {spec.description}")
fully_conv = spec.builder.fully_convolutional

dataset = sidebar.radio("Dataset", (FASHION, FOLDER, UPLOAD), key="train_dataset")
folder_path, uploads = None, []
if dataset == FOLDER:
    folders = workbench.painting_folders(root)
    if folders:
        chosen = ui.choose(
            sidebar,
            "Painting folder",
            {f"{f.name} ({f.count} images)": f for f in folders},
            key="train_folder",
        )
        folder_path = str(chosen.path)
    else:
        where = root / workbench.PAINTINGS_DIR if root else "the data root"
        sidebar.warning(
            f"No painting folders under {where}: add folders there (set {config.DATA_ENV}) or "
            "upload paintings."
        )
elif dataset == UPLOAD:
    uploads = ui.uploaded_files(
        sidebar.file_uploader(
            f"Paintings (up to {ui.MAX_UPLOAD_MB} MB each)",
            accept_multiple_files=True,
            key="train_upload",
        )
    )

channels = 1 if dataset == FASHION else 3
train_limit = None
crop, crops_per_epoch = 64, 512
download = False
if dataset == FASHION:
    image_size = 28
    sidebar.caption("Fashion-MNIST images are 28 x 28 gray.")
    if not data.fashion_mnist_available(root):
        download = sidebar.checkbox(
            "Download Fashion-MNIST if missing (needs internet)",
            value=False,
            key="train_download",
            help=f"Saves about 30 MB under {root or config.default_download_root()}.",
        )
    train_limit = sidebar.number_input(
        "Training images",
        256,
        48_000,
        48_000,
        step=256,
        key="train_limit",
        help="Use the first N of the 48,000 training images; fewer is faster.",
    )
elif fully_conv:
    image_size = sidebar.select_slider(
        "Evaluation image size (pixels)",
        (64, 128, 160, 192, 256, 384, 512),
        160 if family == "anomaly" else 256,
        key=f"train_size_{family}",
        help="Test paintings are resized to this square size; training uses random crops. "
        "Anomaly models separated Munch from Van Gogh best at 160 px.",
    )
    crop = sidebar.select_slider("Crop size (pixels)", (32, 48, 64, 96, 128), 64, key="train_crop")
    crops_per_epoch = sidebar.number_input(
        "Crops per epoch", 16, 20_000, 512, step=16, key="train_crops"
    )
else:
    image_size = sidebar.select_slider(
        "Image size (pixels)",
        (16, 24, 32, 48, 64, 96, 128),
        32,
        key="train_size_mlp",
        help="Paintings are resized and center-cropped to this square size.",
    )

latent = sidebar.number_input(
    "Latent size",
    1,
    4096,
    spec.default_latent(channels),
    key=f"train_latent_{model_name}",
    help="MLP: bottleneck width. conv-ref: middle channel count k. Others: bottleneck channels.",
)
epochs = sidebar.number_input("Epochs", 1, 1000, 5, key="train_epochs")
batch_size = sidebar.select_slider(
    "Batch size",
    (8, 16, 32, 64, 128, 256),
    64 if dataset == FASHION else 16,
    # One key per dataset, so switching datasets shows that dataset's default batch size.
    key=f"train_batch_{'fashion' if dataset == FASHION else 'paintings'}",
)
lr = float(
    sidebar.select_slider(
        "Learning rate", [f"{v:g}" for v in LEARNING_RATES], "0.001", key="train_lr"
    )
)
noise_kind, noise_level = "gaussian", 0.2
if family == "denoising":
    noise_kind = sidebar.selectbox("Noise", NOISE_KINDS, key="train_noise")
    noise_level = sidebar.slider("Noise level", 0.0, 1.0, 0.2, 0.05, key="train_noise_level")
seed = sidebar.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")

# -- start / stop / resume -------------------------------------------------------------------
session_jobs = ui.session_jobs()
start = st.button("Start training", type="primary", key="train_start")
if start:
    if dataset == FOLDER and folder_path is None:
        st.error("No painting folder is selected: add one under the data root or upload paintings.")
    elif dataset == UPLOAD and not uploads:
        st.error("No paintings uploaded: add image files in the sidebar first.")
    else:
        settings = RunSettings(
            family=family,
            model=model_name,
            dataset="fashion-mnist" if dataset == FASHION else "paintings",
            data_root=str(root) if root else None,
            painting_folder=folder_path,
            uploaded=uploads or None,
            image_size=int(image_size),
            latent=int(latent),
            crop=int(crop),
            crops_per_epoch=int(crops_per_epoch),
            train_limit=int(train_limit) if train_limit else None,
            download=download,
            train=TrainConfig(
                epochs=int(epochs),
                batch_size=int(batch_size),
                lr=float(lr),
                noise_kind=noise_kind,
                noise_level=float(noise_level),
                seed=int(seed),
                log_every=10,
            ),
        )
        try:
            session_jobs.append(ui.job_registry().submit(settings))
            st.session_state["train_job"] = session_jobs[-1].label  # show the new job
        except JobLimitError as error:
            st.error(str(error))

if not session_jobs:
    st.info("Choose the settings in the sidebar and press Start training.")
    st.stop()

job = ui.choose(st, "Job", {j.label: j for j in reversed(session_jobs)}, key="train_job")
job_id = job.job_id
snapshot = job.snapshot()

stop_col, epochs_col, resume_col = st.columns([1, 1, 1], vertical_alignment="bottom")
if stop_col.button("Stop", key="train_stop", disabled=not snapshot.active):
    job.stop()
more_epochs = epochs_col.number_input("More epochs", 1, 1000, 2, key="train_more_epochs")
if resume_col.button("Resume", key="train_resume", disabled=not snapshot.can_resume):
    try:
        ui.job_registry().resume(job, int(more_epochs), lr=float(lr))
    except (JobLimitError, RuntimeError, ValueError) as error:
        st.error(str(error))
snapshot = job.snapshot()


# -- live progress ---------------------------------------------------------------------------
@st.fragment(run_every=1.0 if snapshot.active else None)
def live_progress() -> None:
    current = job.snapshot()
    status = current.status if current.status != jobs.RUNNING else current.phase
    cols = st.columns(5)
    cols[0].metric("Status", status)
    cols[1].metric("Epoch", f"{len(current.epochs)} / {current.total_epochs}")
    rate = current.images_per_second
    cols[2].metric("Images/s", f"{rate:,.0f}" if rate else "-")
    left = current.seconds_left
    cols[3].metric("Time left (s)", f"{left:,.0f}" if left is not None else "-")
    last = current.step_losses[-1][1] if current.step_losses else None
    cols[4].metric("Last loss", f"{last:.5f}" if last is not None else "-")
    if current.error:
        st.error(f"Training failed: {current.error}")
    if current.step_losses:
        st.plotly_chart(
            workbench.loss_figure(current.step_losses, current.epochs), key="train_loss_chart"
        )
    elif current.active:
        st.info(f"{current.phase.capitalize()} ...")
    if current.samples:
        st.caption(f"Samples after epoch {current.epochs[-1]['epoch']}")
        for label, row in workbench.sample_rows(current.samples):
            st.image(row, caption=label)
    if snapshot.active and not current.active:
        st.rerun(scope="app")  # redraw the buttons and the results, and stop polling


live_progress()

# -- results and saving ----------------------------------------------------------------------
if snapshot.test_metrics:
    st.subheader("Test results")
    cols = st.columns(len(snapshot.test_metrics))
    names = {
        "test_mse": "Test MSE",
        "psnr_noisy": "PSNR noisy (dB)",
        "psnr_denoised": "PSNR denoised (dB)",
        "ssim_noisy": "SSIM noisy",
        "ssim_denoised": "SSIM denoised",
    }
    for col, (key, value) in zip(cols, snapshot.test_metrics.items(), strict=True):
        col.metric(names.get(key, key), f"{value:.5f}" if key == "test_mse" else f"{value:.3f}")
    threshold = (snapshot.metadata or {}).get("anomaly", {}).get("threshold")
    if threshold is not None:
        st.caption(
            f"Default anomaly threshold (mean + k * std of training errors): {threshold:.6f}"
        )

if snapshot.can_save:
    st.subheader("Save")
    default_name = f"{job.settings.model}-{job.settings.dataset}-l{job.settings.latent}"
    name = st.text_input("Checkpoint name", default_name, key=f"train_save_name_{job_id}")
    overwrite = st.checkbox("Overwrite an existing checkpoint", key="train_overwrite")
    if st.button("Save checkpoint", key="train_save"):
        try:
            path = job.save(name, overwrite=overwrite)
        except FileExistsError:
            st.error(
                f"A checkpoint named {name.strip()!r} already exists in "
                f"{config.user_checkpoint_dir()}: choose another name or tick Overwrite."
            )
        except (ValueError, RuntimeError) as error:
            st.error(str(error))
        else:
            st.success(f"Saved {path}. It is now listed on the other pages.")
    elif snapshot.saved_path:
        st.caption(f"Last saved as {snapshot.saved_path}")
