"""Anomaly page: rank paintings by reconstruction error and evaluate the ranking with labels."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from paintae import config, data, ui, workbench
from paintae.anomaly import rank, ranking_csv

FOLDER = "Folder under the data root"
UPLOAD_FILES, UPLOAD_FOLDER = "Upload files", "Upload a folder"
OTHER = "Other folder ..."

ui.setup_page(
    "Anomaly",
    "Paintings unlike the training set reconstruct worse: higher score means more anomalous.",
)
root = config.data_root()
ui.data_root_caption(root)

# -- settings --------------------------------------------------------------------------------
info = ui.checkpoint_picker("anomaly", key="anomaly_checkpoint", label="Anomaly checkpoint")
source = st.sidebar.radio(
    "Paintings",
    (FOLDER, UPLOAD_FILES, UPLOAD_FOLDER),
    index=0 if root is not None else 1,
    key="anomaly_source",
)
folder_text, uploads, score_folder = None, [], False
if source == FOLDER:
    known = workbench.painting_folders(root, include_root=True)
    choices = {f"{f.name} ({f.count} images)": str(f.path) for f in known} | {OTHER: OTHER}
    picked = ui.choose(st.sidebar, "Folder", choices, key="anomaly_folder")
    if picked == OTHER:
        folder_text = st.sidebar.text_input(
            "Folder path inside the data root",
            key="anomaly_folder_path",
            help="Absolute, or relative to the data root. Folders outside it are rejected.",
        )
    else:
        folder_text = picked
    # Scoring a large folder takes a while, so it starts on request, not on page load.
    score_folder = st.sidebar.button(
        "Score this folder", type="primary", key="anomaly_score_folder"
    )
else:
    uploads = ui.uploaded_files(
        st.sidebar.file_uploader(
            f"Paintings (up to {ui.MAX_UPLOAD_MB} MB each)",
            accept_multiple_files=True if source == UPLOAD_FILES else "directory",
            key=f"anomaly_upload_{'files' if source == UPLOAD_FILES else 'folder'}",
        )
    )

if info is None:
    st.info("Pick an anomaly checkpoint in the sidebar; the Train page makes one.")
    st.stop()
loaded = ui.load_model(info, "anomaly")
if loaded is None:
    st.stop()
model, metadata = loaded

# -- load and score --------------------------------------------------------------------------
paintings, source_key = None, None
try:
    if source == FOLDER:
        if not folder_text:
            st.info("Type a folder path inside the data root in the sidebar.")
            st.stop()
        folder = workbench.resolve_under_root(folder_text, root)
        if score_folder:
            st.session_state["anomaly_scored_folder"] = str(folder)
        if st.session_state.get("anomaly_scored_folder") != str(folder):
            st.info(
                f"Press **Score this folder** in the sidebar to rank the paintings in {folder}."
            )
            st.stop()
        with st.spinner(f"Reading paintings in {folder} ..."):
            paintings = data.load_painting_folder(folder)
        signature = [(p.as_posix(), p.stat().st_mtime_ns) for p in paintings.paths]
        source_key = f"{folder}:{hashlib.sha1(repr(signature).encode()).hexdigest()}"
    elif uploads:
        paintings = data.load_uploaded_images(uploads)
        digest = hashlib.sha1()
        for name, blob in uploads:
            digest.update(name.encode() + hashlib.sha1(blob).digest())
        source_key = f"upload:{digest.hexdigest()}"
    else:
        st.info("Upload paintings in the sidebar.")
        st.stop()
except (ValueError, OSError) as error:
    ui.show_error(error, "The paintings could not be read")
    st.stop()
ui.show_skipped(paintings.skipped)


bar = st.progress(0.0, text=f"Scoring {len(paintings)} paintings ...")
try:
    run = ui.shared_cached(
        "anomaly_scores",
        (str(info.path), info.path.stat().st_mtime_ns, source_key),
        lambda: workbench.score_paintings(
            model,
            metadata,
            paintings,
            folder=folder if source == FOLDER else None,
            progress=lambda done, total: bar.progress(
                done / total, text=f"Scored {done} of {total} paintings"
            ),
        ),
    )
except ValueError as error:
    bar.empty()
    ui.show_error(error, f"Checkpoint {info.name} cannot score these paintings")
    st.stop()
bar.empty()

# -- threshold and labels --------------------------------------------------------------------
stats = metadata.get("anomaly") or {}
default_k = float(stats.get("k", 1.0))
if stats:
    if st.sidebar.button("Reset threshold", key="anomaly_reset"):
        st.session_state["anomaly_k"] = default_k
    k = st.sidebar.slider(
        "Threshold k (std above the normal mean)",
        -3.0,
        10.0,
        default_k,
        0.1,
        key="anomaly_k",
        help=workbench.threshold_help(stats),
    )
    threshold = workbench.default_threshold(metadata, k)
else:
    low, high = float(run.scores.min()), float(run.scores.max())
    st.sidebar.warning("The checkpoint stores no error statistics; set the threshold directly.")
    threshold = st.sidebar.slider(
        "Threshold",
        low,
        max(high, low + 1e-9),
        float(np.percentile(run.scores, 95)),
        format="%.6f",
        key="anomaly_threshold",
    )

labels = None
normal_class = None
if run.class_names:
    trained_on = workbench.normal_class_of(metadata)
    index = run.class_names.index(trained_on) if trained_on in run.class_names else 0
    normal_class = st.sidebar.selectbox(
        "Normal class (the one the model was trained on)",
        run.class_names,
        index=index,
        key="anomaly_normal",
    )
    labels = workbench.binary_labels(run, normal_class)
gallery_size = st.sidebar.slider("Paintings in the gallery", 4, 48, 12, 4, key="anomaly_gallery")

ranking = rank(run.scores, run.names, threshold, labels)
flagged = sum(item.flagged for item in ranking)

# -- summary ---------------------------------------------------------------------------------
cols = st.columns(4)
cols[0].metric("Paintings scored", len(ranking))
cols[1].metric("Flagged as anomalous", flagged)
cols[2].metric(
    "Threshold",
    f"{threshold:.4f}" if stats.get("score") == "combined" else f"{threshold:.6f}",
    help=f"Score: {workbench.score_label(stats)}.",
)
st.caption(
    f"Images resized to {run.image_size} x {run.image_size} (shorter side, then center crop), "
    f"as in the checkpoint's evaluation. Scoring took {run.seconds:.1f} s."
)

groups = None
if labels is not None:
    groups = {
        name: run.scores[np.asarray(run.class_index) == i] for i, name in enumerate(run.class_names)
    }
st.plotly_chart(
    workbench.score_histogram(run.scores, threshold, groups, workbench.score_label(stats)),
    key="anomaly_histogram",
)

if labels is not None:
    anomalies = [name for name in run.class_names if name != normal_class]
    st.subheader("Evaluation against the class folders")
    st.markdown(
        f"Normal (label 0): **{normal_class}**. Anomaly (label 1): **{', '.join(anomalies)}**."
    )
    try:
        report = workbench.detection_report(run.scores, labels, threshold)
    except ValueError as error:
        ui.show_error(error, "The labelled evaluation is not possible")
    else:
        cols[3].metric("AUROC", f"{report.auroc:.3f}")
        metric_cols = st.columns(5)
        metric_cols[0].metric(
            "AUROC (95% CI)",
            f"{report.auroc:.3f}",
            help=f"Bootstrap interval {report.auroc_low:.3f} to {report.auroc_high:.3f}",
        )
        metric_cols[1].metric("Average precision", f"{report.average_precision:.3f}")
        metric_cols[2].metric("Precision", f"{report.report['precision']:.3f}")
        metric_cols[3].metric("Recall", f"{report.report['recall']:.3f}")
        metric_cols[4].metric("F1", f"{report.report['f1']:.3f}")
        st.caption(
            f"AUROC 95% bootstrap interval: {report.auroc_low:.3f} to {report.auroc_high:.3f}."
        )
        left, right = st.columns(2)
        left.plotly_chart(
            workbench.roc_figure(report.fpr, report.tpr, report.auroc), key="anomaly_roc"
        )
        right.markdown("**Confusion table at the threshold**")
        right.dataframe(
            pd.DataFrame.from_dict(report.confusion, orient="index"), key="anomaly_confusion"
        )
elif run.class_names:
    st.info("The normal class is not among the class folders, so no labelled evaluation.")

# -- ranking ---------------------------------------------------------------------------------
st.subheader("Ranking")
class_of = dict(zip(run.names, run.class_index, strict=True))
table = pd.DataFrame(
    {
        "rank": [item.rank for item in ranking],
        "name": [item.name for item in ranking],
        "class": [
            run.class_names[class_of[item.name]] if class_of[item.name] >= 0 else ""
            for item in ranking
        ],
        "score": [item.score for item in ranking],
        "flagged": [item.flagged for item in ranking],
    }
)
st.dataframe(table, hide_index=True, height=260, key="anomaly_ranking")
st.download_button(
    "Download ranking CSV",
    ranking_csv(ranking),
    file_name=f"ranking-{info.name}.csv",
    mime="text/csv",
    key="anomaly_csv",
)

st.subheader("Gallery: highest scores first")
position = {name: i for i, name in enumerate(run.names)}
vmax = float(np.percentile(np.concatenate([m.ravel() for m in run.error_maps]), 99))
for start in range(0, min(gallery_size, len(ranking)), 4):
    row = st.columns(4)
    for col, item in zip(row, ranking[start : start + 4], strict=False):
        i = position[item.name]
        flag = "FLAGGED" if item.flagged else "normal"
        # Both images stretch to the column, so a painting and its map line up at one size.
        col.image(run.images[i], caption=f"#{item.rank} {item.name}", width="stretch")
        col.image(
            workbench.heat_map(run.error_maps[i], vmax),
            caption=f"error map, score {item.score:.6f}, {flag}",
            width="stretch",
        )

st.subheader("Inspect one painting")
chosen = ui.choose(
    st,
    "Painting",
    {f"#{item.rank} {item.name}": item.name for item in ranking},
    key="anomaly_inspect",
)
i = position[chosen]
left, right = st.columns(2)
left.image(run.images[i], caption=chosen, width="stretch")
right.image(
    workbench.heat_map(run.error_maps[i]),
    caption=workbench.error_map_label(stats),
    width="stretch",
)
