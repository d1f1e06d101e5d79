"""Denoise page: noise an image, denoise it with a model, compare with classical filters."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from paintae import checkpoints, config, data, ui, workbench
from paintae.denoise import CLASSICAL_METHODS
from paintae.images import ImageLoadError
from paintae.noise import NOISE_KINDS

FASHION, FOLDER, UPLOAD = "Fashion-MNIST test image", "Painting from a folder", "Upload"

ui.setup_page(
    "Denoise",
    "Clean, noisy and denoised images side by side; every control redraws at once.",
)
root = config.data_root()
ui.data_root_caption(root)

# -- settings --------------------------------------------------------------------------------
sources = [UPLOAD]
folders = workbench.painting_folders(root)
if folders:
    sources.insert(0, FOLDER)
if data.fashion_mnist_available(root):
    sources.insert(0, FASHION)
source = st.sidebar.radio("Image", sources, key="denoise_source")
# Gray models come first for Fashion-MNIST and colour models for paintings; each kind of image
# remembers its own pick.
channels = 1 if source == FASHION else 3
info = ui.checkpoint_picker(
    "denoising",
    key=f"denoise_checkpoint_{channels}",
    label="Denoising checkpoint",
    channels=channels,
)
loaded = ui.load_model(info, "denoising") if info else None
model, metadata = loaded if loaded else (None, {})


@st.cache_data(max_entries=32, show_spinner=False)
def load_file(path: str, mtime_ns: int, max_side: int):
    return workbench.load_tensor(Path(path), name=Path(path).name, max_side=max_side)


max_side = st.sidebar.select_slider(
    "Largest side (pixels)",
    (128, 256, 384, 512, 768, 1024, 2048),
    512,
    key="denoise_max_side",
    help="Larger images are downscaled first; models run on the whole image in tiles.",
)
clean, image_name = None, None
try:
    if source == FASHION:
        images, labels = ui.fashion_mnist_test(str(root))
        index = st.sidebar.number_input(
            "Test image index", 0, len(images) - 1, 0, key="denoise_index"
        )
        clean, image_name = images[int(index)], f"fashion-mnist-test-{int(index)}"
    elif source == FOLDER:
        folder = ui.choose(
            st.sidebar,
            "Folder",
            {f"{f.name} ({f.count})": f for f in folders},
            key="denoise_folder",
        )
        files = workbench.image_files(folder.path) or [
            f for sub in sorted(folder.path.iterdir()) for f in workbench.image_files(sub)
        ]
        chosen = ui.choose(
            st.sidebar,
            "Painting",
            {p.relative_to(folder.path).as_posix(): p for p in files},
            key="denoise_painting",
        )
        clean = load_file(str(chosen), chosen.stat().st_mtime_ns, int(max_side))
        image_name = chosen.stem
    else:
        uploads = ui.uploaded_files(
            st.sidebar.file_uploader(
                f"Images (up to {ui.MAX_UPLOAD_MB} MB each)",
                accept_multiple_files=True,
                key="denoise_upload",
            )
        )
        loaded_uploads, skipped = [], []
        for name, blob in uploads:
            try:
                loaded_uploads.append((name, workbench.load_tensor(blob, name, int(max_side))))
            except ImageLoadError as error:
                skipped.append((name, str(error)))
        ui.show_skipped(skipped)
        if loaded_uploads:
            image_name, clean = ui.choose(
                st.sidebar,
                "Uploaded image",
                {f"{i + 1}: {name}": (name, x) for i, (name, x) in enumerate(loaded_uploads)},
                key="denoise_upload_pick",
            )
            image_name = image_name.rsplit(".", 1)[0]
except (ImageLoadError, OSError, ValueError) as error:
    ui.show_error(error, "The image could not be loaded")

noise_kind = st.sidebar.selectbox("Noise", NOISE_KINDS, key="denoise_noise")
level = st.sidebar.slider("Noise level", 0.0, 1.0, 0.2, 0.01, key="denoise_level")
if st.sidebar.button("Redraw noise", key="denoise_redraw"):
    st.session_state["denoise_seed"] = st.session_state.get("denoise_seed", 0) + 1
seed = st.sidebar.number_input("Noise seed", 0, 2**31 - 1, key="denoise_seed")
show_baselines = st.sidebar.checkbox(
    "Compare classical filters (NL-means is slow on large images)", key="denoise_baselines"
)

if clean is None:
    st.info("Choose or upload an image in the sidebar.")
    st.stop()

# -- denoise ---------------------------------------------------------------------------------
note = None
if model is not None:
    clean, note = workbench.match_model_channels(clean, int(model.config["in_channels"]))
else:
    st.warning(
        "No denoising model selected: the page shows the noisy image and classical filters. "
        "Train a denoising model on the Train page and save it to compare."
    )
if note:
    st.caption(note)

try:
    preview = workbench.denoise_preview(model, clean, noise_kind, float(level), int(seed))
except (ValueError, RuntimeError) as error:
    ui.show_error(error, f"Denoising a {tuple(clean.shape)} image failed")
    st.stop()

columns = st.columns(3)
ui.show_image(columns[0], preview.clean, "clean")
ui.show_image(columns[1], preview.noisy, "noisy")
if preview.denoised is not None:
    ui.show_image(columns[2], preview.denoised, "denoised")

metric_cols = st.columns(5)
metric_cols[0].metric("PSNR noisy (dB)", f"{preview.psnr_noisy:.2f}")
metric_cols[2].metric("SSIM noisy", f"{preview.ssim_noisy:.3f}" if preview.ssim_noisy else "-")
if preview.psnr_denoised is not None:
    metric_cols[1].metric(
        "PSNR denoised (dB)",
        f"{preview.psnr_denoised:.2f}",
        f"{preview.psnr_denoised - preview.psnr_noisy:+.2f}",
    )
    ssim_text = f"{preview.ssim_denoised:.3f}" if preview.ssim_denoised is not None else "-"
    metric_cols[3].metric("SSIM denoised", ssim_text)
metric_cols[4].metric("Update time (ms)", f"{preview.total_milliseconds:.0f}")
st.caption(
    "Time per part: "
    + ", ".join(f"{part} {ms:.0f} ms" for part, ms in preview.milliseconds.items())
    + f". Image {preview.clean.shape[-1]} x {preview.clean.shape[-2]} pixels."
)
if preview.denoised is not None:
    st.download_button(
        "Download denoised PNG",
        workbench.png_bytes(preview.denoised),
        file_name=f"{image_name}-denoised.png",
        mime="image/png",
        key="denoise_download",
    )


# -- classical baselines ---------------------------------------------------------------------
@st.cache_data(max_entries=64, show_spinner="Running classical filters ...")
def baselines(image_key: str, kind: str, noise: float, noise_seed: int, _clean, _noisy):
    return workbench.classical_baselines(_clean, _noisy, noise, CLASSICAL_METHODS)


if show_baselines:
    st.subheader("Classical filters")
    image_key = f"{source}:{image_name}:{max_side}:{tuple(clean.shape)}"
    results = baselines(image_key, noise_kind, float(level), int(seed), clean, preview.noisy)
    rows = []
    if preview.psnr_denoised is not None:
        rows.append(
            {
                "method": f"model ({info.name})",
                "PSNR (dB)": preview.psnr_denoised,
                "SSIM": preview.ssim_denoised,
                "time (ms)": preview.milliseconds.get("model"),
            }
        )
    for result in results:
        rows.append(
            {
                "method": result.method,
                "PSNR (dB)": result.psnr,
                "SSIM": result.ssim,
                "time (ms)": result.milliseconds,
            }
        )
    st.dataframe(pd.DataFrame(rows).round(3), hide_index=True, key="denoise_baseline_table")
    for col, result in zip(st.columns(len(results)), results, strict=True):
        ui.show_image(col, result.image, result.method)

# -- MLP reconstruction vs latent size -------------------------------------------------------
st.subheader("MLP reconstruction vs latent size")
latent_infos = workbench.latent_checkpoints(checkpoints.list_checkpoints(family="reconstruction"))
if not latent_infos:
    st.info(
        "No Fashion-MNIST MLP reconstruction checkpoints found: train 'mlp' or 'mlp-deep' on "
        "Fashion-MNIST with a few latent sizes on the Train page and save each."
    )
else:
    model_names = sorted({i.model_name for i in latent_infos})
    mlp_name = st.radio("MLP design", model_names, horizontal=True, key="denoise_mlp_model")
    by_latent = {i.metadata["model"]["latent"]: i for i in latent_infos if i.model_name == mlp_name}
    latents = sorted(by_latent)
    # Start at the reference design's latent size, 64, when a checkpoint has it.
    latent = st.select_slider(
        "Latent size",
        latents,
        64 if 64 in by_latent else latents[-1],
        key=f"denoise_latent_{mlp_name}",
    )
    chosen_info = by_latent[latent]
    st.caption(f"Checkpoint {ui.checkpoint_label(chosen_info)}")
    loaded_mlp = ui.load_model(chosen_info, "reconstruction")
    if source != FASHION:
        st.info("Choose a Fashion-MNIST test image in the sidebar to see its reconstructions.")
    elif loaded_mlp:
        recon = workbench.reconstruct(loaded_mlp[0], clean)
        left, right, stats = st.columns([1, 1, 1])
        ui.show_image(left, clean, "input (clean)")
        ui.show_image(right, recon.output, "reconstruction")
        stats.metric("Reconstruction MSE", f"{recon.mse:.5f}")
        stats.metric("Reconstruction PSNR (dB)", f"{recon.psnr:.2f}")
    st.plotly_chart(workbench.latent_figure(latent_infos), key="denoise_latent_chart")
