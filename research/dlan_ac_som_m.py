"""How DLAN-AC's cluster count M depends on the SOM's neighbourhood: refit the AC on real Ped2 features.

Takes a trained DLAN-AC checkpoint (default: the lite accuracy run's), encodes evenly spaced training
clips of UCSD Ped2, and fits a fresh Adaptive Clusterer per setting on the same feature maps:
the paper's truncated neighbourhood (δ = 0.5, winner-only), MiniSom's untruncated Gaussian at
δ = 0.5, and the released script's default (Gaussian, δ = 0.3). Each keeps k = 5000 steps per map.
Reports M (eq. 4), the mean number of winners per map and the SOM time per map; writes a results file.

    python -m research.dlan_ac_som_m                      # lite checkpoint, 200 maps
    python -m research.dlan_ac_som_m --ckpt <run>/weights/lightning/model.ckpt --maps 500
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from benchmarks.common import REPO, commit, ensure_ped2, init_args_of, record, shown_path

logger = logging.getLogger("dlan_ac_som_m")

SETTINGS = {
    "paper_truncated_sigma0.5": {"som_neighbourhood": "truncated", "som_sigma": 0.5},
    "minisom_gaussian_sigma0.5": {"som_neighbourhood": "gaussian", "som_sigma": 0.5},
    "script_default_gaussian_sigma0.3": {"som_neighbourhood": "gaussian", "som_sigma": 0.3},
}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=None, help="DLAN-AC checkpoint (default: newest lite run)")
    parser.add_argument("--maps", type=int, default=200, help="evenly spaced training clips to encode")
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started_on = commit()

    import torch
    from anomalib.data import UCSDped

    from anomalib_vadproto import DlanAc
    from anomalib_vadproto.components.clip import split_clip, stack_frames
    from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer

    ckpt = args.ckpt or max(
        (REPO / ".cache" / "runs" / "dlan_ac_lite").rglob("model.ckpt"), key=lambda p: p.stat().st_mtime
    )
    model = DlanAc.load_from_checkpoint(ckpt, map_location="cpu").eval()
    datamodule = UCSDped(
        root=args.data_root or ensure_ped2(),
        category="UCSDped2",
        clip_length_in_frames=model.clip_length,
        frames_between_clips=1,
        target_frame="last",
        num_workers=0,
    )
    datamodule.setup()
    dataset = datamodule.train_data
    indices = torch.linspace(0, len(dataset) - 1, args.maps).round().long().unique().tolist()
    with torch.no_grad():
        clips = torch.stack([dataset[i].image for i in indices])
        maps = []
        for chunk in clips.split(16):
            inputs, _ = split_clip(model.pre_processor(chunk), model.model.num_inputs)
            features, _ = model.model.encoder(stack_frames(inputs))
            maps.append(torch.nn.functional.normalize(features, dim=1))
        maps = torch.cat(maps)
    logger.info("encoded %d maps of shape %s", len(maps), tuple(maps.shape[1:]))

    hp = model.hparams
    results = {}
    for name, setting in SETTINGS.items():
        som = AdaptiveClusterer(
            feature_dim=maps.shape[1],
            num_neurons=hp.get("num_clusters", 25),
            sigma=setting["som_sigma"],
            learning_rate=hp.get("som_learning_rate", 0.5),
            num_iterations=hp.get("som_iterations", 5000),
            neighbourhood=setting["som_neighbourhood"],
            seed=0,
        )
        start = time.perf_counter()
        som.fit_batch(maps)
        seconds = time.perf_counter() - start
        results[name] = {
            "m": som.num_clusters,
            "mean_winners": round(som.mean_z, 3),
            "seconds_per_map": round(seconds / len(maps), 4),
        }
        logger.info(
            "%s: M = %d (mean winners %.2f), %.1f ms per map",
            name,
            som.num_clusters,
            som.mean_z,
            1e3 * seconds / len(maps),
        )

    result = {
        "kind": "som_m",
        "model": "dlan_ac",
        "profile": "lite" if hp.get("width") != 64 else "paper",
        "dataset": "ucsd_ped2",
        "checkpoint": shown_path(ckpt),
        "m_learnt_in_training": model.model.num_prototypes,
        "maps": len(maps),
        "feature_shape": list(maps.shape[1:]),
        "som_iterations": hp.get("som_iterations", 5000),
        "paper_m": 13,
        "settings": results,
    }
    run_settings = {
        "models": {"dlan_ac": {"checkpoint": shown_path(ckpt), "model_init_args": init_args_of(model)}},
        "som_settings": SETTINGS,
        "maps": args.maps,
        "som_seed": 0,
    }
    path = record(
        f"som_m_dlan_ac_{result['profile']}_ped2",
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )
    logger.info("-> %s", path)
    return path


if __name__ == "__main__":
    main()
