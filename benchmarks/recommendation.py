"""From emotion to music, measured: what the valence-arousal mapping and the recommender do.

For every face of each feature table (``features.extract`` output), the model's class
probabilities give a point on the circumplex (:mod:`classifiers.affect`); then

(a) tracks: the mean distance of ``n`` matched tracks to their target point, against ``n``
    random tracks of the catalogue, in standard deviations of the catalogue (per true
    class), and how far a lift list climbs in valence from its first track to its last;
(b) affect: the mean predicted (valence, arousal) per true class against that class's point,
    the distance between them, and the Pearson correlation over faces between the predicted
    and the true class's valence (and arousal);
(c) speed: the median time of one recommendation (n tracks, each mode) with the catalogue
    loaded, and of loading the catalogue.

    python -m features.extract ../shared/datasets/fer2013/test -o /tmp/music/fer2013_test.npz --detector whole
    python -m features.extract ../shared/datasets/jaffe -o /tmp/music/jaffe.npz --detector hog
    python benchmarks/recommendation.py /tmp/music/fer2013_test.npz /tmp/music/jaffe.npz \\
        --catalogue ../shared/music/deezer_mood.csv [--model FILE] [--n 10] [--json OUT]

Read the figures for what they are: the shipped default model was trained on CK+48, JAFFE and
all of FER-2013 (its test part included). On those faces they describe what the mapping does
with that model's outputs; they are not an accuracy, and faces it never saw would place less
well.
"""

import json
import os
import statistics
import sys
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CAVEAT = ("the shipped model was trained on CK+48, JAFFE and all of FER-2013 (test included): on these faces "
          "the figures show what the valence-arousal mapping does with its outputs, not an accuracy")


def face_points(table_path, model):
    """(true labels, predicted (valence, arousal) per face) of the usable faces of a feature table."""
    from classifiers.affect import valence_arousal
    from features.table import load_table

    table = load_table(table_path)
    rows = table.ok & ~table.augmented
    proba = model.predict_proba(table.X[rows])
    points = np.array([valence_arousal(dict(zip(model.labels, p))) for p in proba])
    return table.labels[rows].astype(str), points


def track_figures(labels, points, catalogue, n, seed):
    """(a) per true class: mean distance of matched vs random tracks, and the lift's valence climb."""
    from classifiers.recommend import recommend

    rng = np.random.default_rng(seed)
    per_face = []
    for i, (v, a) in enumerate(points):
        target = catalogue.standard_point(v, a)
        match = recommend((v, a), catalogue, n=n, mode="match", seed=seed + i)
        lift = recommend((v, a), catalogue, n=n, mode="lift", seed=seed + i)
        random_tracks = catalogue.points[rng.choice(len(catalogue), n, replace=False)]
        per_face.append((np.mean([t.distance for t in match.tracks]),
                         np.linalg.norm(random_tracks - target, axis=1).mean(),
                         (lift.tracks[-1].valence - lift.tracks[0].valence) / catalogue.std[0]))
    per_face = np.array(per_face)
    out = {}
    for label in sorted(set(labels)) + ["all"]:
        rows = per_face if label == "all" else per_face[labels == label]
        out[label] = {"faces": len(rows), "match_distance": round(float(rows[:, 0].mean()), 3),
                      "random_distance": round(float(rows[:, 1].mean()), 3),
                      "lift_valence_climb": round(float(rows[:, 2].mean()), 3)}
    return out


def affect_figures(labels, points):
    """(b) per true class: mean predicted point vs the class's point; correlations over all faces."""
    from classifiers.affect import point_of

    truth = np.array([point_of(label) for label in labels])
    out = {"classes": {}}
    for label in sorted(set(labels)):
        mine = points[labels == label]
        mean = mine.mean(axis=0)
        out["classes"][label] = {
            "faces": len(mine), "class_point": [round(float(x), 3) for x in point_of(label)],
            "mean_predicted": [round(float(x), 3) for x in mean],
            "distance": round(float(np.linalg.norm(mean - point_of(label))), 3),
            "valence_sign_right": (round(float(np.mean(np.sign(mine[:, 0]) == np.sign(point_of(label)[0]))), 3)
                                   if point_of(label)[0] else None)}
    for axis, name in enumerate(("valence", "arousal")):
        out[f"{name}_correlation"] = round(float(np.corrcoef(points[:, axis], truth[:, axis])[0, 1]), 3)
    out["mean_error"] = round(float(np.linalg.norm(points - truth, axis=1).mean()), 3)
    return out


def timing(catalogue_path, n, repeats):
    """(c) median seconds: loading the catalogue, and one recommendation per mode."""
    from classifiers.recommend import load_catalogue, recommend

    loads = []
    for _ in range(3):
        start = time.perf_counter()
        catalogue = load_catalogue(catalogue_path)
        loads.append(time.perf_counter() - start)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(repeats, 2))
    out = {"tracks": len(catalogue), "load_seconds": round(statistics.median(loads), 4), "n": n}
    for mode in ("match", "lift"):
        times = []
        for seed, point in enumerate(points):
            start = time.perf_counter()
            recommend(tuple(point), catalogue, n=n, mode=mode, seed=seed)
            times.append(time.perf_counter() - start)
        out[f"{mode}_ms_median"] = round(1000 * statistics.median(times), 3)
        out[f"{mode}_ms_p95"] = round(1000 * float(np.percentile(times, 95)), 3)
    return out


def print_report(report):
    click.echo(f"NOTE: {CAVEAT}.")
    click.echo(f"model {report['model']}; catalogue {report['catalogue']} ({report['timing']['tracks']} tracks); "
               f"n = {report['n']}")
    for name, result in report["tables"].items():
        click.echo(f"\n## {name} ({result['faces']} faces; in the model's training data: {result['trained_on']})")
        click.echo("(a) distance to target (catalogue SDs)      (b) predicted (valence, arousal) vs class point")
        click.echo(f"{'class':<9} {'faces':>5} {'match':>6} {'random':>6} {'lift+':>6}   "
                   f"{'class point':>14} {'mean predicted':>16} {'dist':>5} {'v sign':>6}")
        affect = result["affect"]["classes"]
        for label, row in result["tracks"].items():
            a = affect.get(label)
            right = "" if not a else f"{a['class_point'][0]:+.2f}, {a['class_point'][1]:+.2f}"
            pred = "" if not a else f"{a['mean_predicted'][0]:+.2f}, {a['mean_predicted'][1]:+.2f}"
            dist = "" if not a else f"{a['distance']:.2f}"
            sign = "" if not a or a["valence_sign_right"] is None else f"{a['valence_sign_right']:.0%}"
            click.echo(f"{label:<9} {row['faces']:>5} {row['match_distance']:>6.3f} {row['random_distance']:>6.3f} "
                       f"{row['lift_valence_climb']:>6.2f}   {right:>14} {pred:>16} {dist:>5} {sign:>6}")
        b = result["affect"]
        click.echo(f"correlation with the true class's point over faces: valence r = {b['valence_correlation']}, "
                   f"arousal r = {b['arousal_correlation']}; mean distance to it {b['mean_error']}")
    t = report["timing"]
    click.echo(f"\n(c) one recommendation of {t['n']} tracks: match {t['match_ms_median']} ms, lift "
               f"{t['lift_ms_median']} ms (median; p95 {t['match_ms_p95']} / {t['lift_ms_p95']} ms); "
               f"loading the catalogue {t['load_seconds']} s")


@click.command()
@click.argument("tables", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--catalogue", "catalogue_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Music catalogue CSV (artist, title, valence, arousal), e.g. ../shared/music/deezer_mood.csv.")
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped model).")
@click.option("--n", default=10, show_default=True, help="Tracks per recommendation.")
@click.option("--seed", default=0, show_default=True)
@click.option("--repeats", default=500, show_default=True, help="Recommendations timed per mode.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
def main(tables, catalogue_path, model_path, n, seed, repeats, json_out):
    from classifiers import load_model
    from classifiers.recommend import load_catalogue

    model = load_model(model_path)
    catalogue = load_catalogue(catalogue_path)
    trained = set(model.meta.get("training_data", {}).get("datasets", {}))
    report = {"note": CAVEAT, "model": model.path or "default", "catalogue": catalogue_path, "n": n, "seed": seed,
              "tables": {}, "timing": timing(catalogue_path, n, repeats)}
    for path in tables:
        name = os.path.splitext(os.path.basename(path))[0]
        labels, points = face_points(path, model)
        report["tables"][name] = {
            "path": path, "faces": len(labels),
            "trained_on": next((d for d in sorted(trained) if name.startswith(d)), "no"),
            "tracks": track_figures(labels, points, catalogue, n, seed),
            "affect": affect_figures(labels, points)}
    print_report(report)
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
