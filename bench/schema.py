"""The run record's names: every file of a run folder, every summary.json field and every CSV
column, each field with its unit and meaning.

bench.record writes the record; the sweep, the report, `bench figures` and W&B read it. All of
them spell a file, field or column through the names here, so a rename happens in one place.
README "The run record" shows the tables `markdown_table` renders from the field lists below
(tests/test_readme.py checks that they are equal). Plain data: importing it imports nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One field of a record file: its name, unit ("" where it has none) and meaning."""

    name: str
    unit: str
    doc: str
    always: bool = True  # False: only some records have it (see doc)


# ---- the folders and files ----------------------------------------------------------------

RUNS_DIR = "runs"  # results/<study>/runs/<run_id>/: one run folder per run
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
LAYERS_FILE = "layers.csv"
GRADS_FILE = "grads.csv"
EVALS_DIR = "evals"  # <run folder>/evals/<eval_id>/: the eval records of `bench eval`
LAST_CKPT = "last.ckpt"  # full training state of the latest epoch (resume)
BEST_CKPT = "best.ckpt"  # weights of the best epoch by val/acc (eval)
WANDB_FOLDER = "wandb"  # W&B's own folder in a run folder (offline-run-<time>-<id>/)
RECORD_FILES = (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, LAYERS_FILE, GRADS_FILE)
CHECKPOINT_FILES = {"last": LAST_CKPT, "best": BEST_CKPT}  # summary `checkpoints` key -> file

# ---- summary.json ---------------------------------------------------------------------------

# `status`: a run is "running" from its start until it ends in one of the others
RUNNING, COMPLETED, FAILED, PRUNED, INTERRUPTED, DIVERGED = (
    "running", "completed", "failed", "pruned", "interrupted", "diverged")
STATUSES = (RUNNING, COMPLETED, FAILED, PRUNED, INTERRUPTED, DIVERGED)

CONFIG = "config"
RUN_ID = "run_id"
STUDY = "study"
TRIAL = "trial"
STATUS = "status"
ERROR = "error"
TRACEBACK = "traceback"
TEST_ACC = "test_acc"
TEST_LOSS = "test_loss"
VAL_ACC = "val_acc"
EPOCHS_COMPLETED = "epochs_completed"
DURATION_S = "duration_s"
SPIKES_PER_IMAGE = "spikes_per_image"  # also a layers.csv column (one probe's value)
SPIKES_TOTAL_PER_IMAGE = "spikes_total_per_image"
NONZERO_PER_IMAGE = "nonzero_per_image"  # also a layers.csv column
NONZERO_TOTAL_PER_IMAGE = "nonzero_total_per_image"
MAX_SPIKE_PER_PROBE = "max_spike_per_probe"
ENERGY_UJ_PER_IMAGE = "energy_uj_per_image"
ENERGY = "energy"
GRAD_NORM_PER_BLOCK = "grad_norm_per_block"
CHECKPOINTS = "checkpoints"
WANDB_DIR = "wandb_dir"
WANDB_RUN = "wandb_run"
# fields of an eval record's summary.json only
EVAL_OF = "eval_of"
EVAL_ID = "eval_id"
CHECKPOINT = "checkpoint"
SPLIT = "split"  # also a layers.csv column
SETS = "sets"
# keys of the `energy` object that other modules read (bench.energy.models writes it; README
# "Energy" describes the rest)
ENERGY_TOTAL_UJ = "total_uj_per_image"
ENERGY_BREAKDOWN_UJ = "breakdown_uj_per_image"
ENERGY_MEASURED = "measured"  # what the estimate priced: bench.energy.reprice prices it again
ENERGY_IMAGES = "images"  # test images the estimate averaged over
ENERGY_OPS = "ops_per_image"  # each operation / access count summed over layers
ENERGY_PER_LAYER = "per_layer"  # one object per layer: ENERGY_LAYER, its counts, ENERGY_LAYER_UJ
ENERGY_LAYER, ENERGY_LAYER_UJ = "layer", "uj"
# the `energy` object of records written before 0.2 (bench.report.load still reads them)
OLD_ENERGY_MEMORY_PARTS = "memory_parts_uj_per_image"
OLD_ENERGY_ARITH = "arith_uj_per_image"
ENERGY_KEYS = (ENERGY_TOTAL_UJ, ENERGY_BREAKDOWN_UJ, ENERGY_MEASURED, ENERGY_IMAGES, ENERGY_OPS,
               ENERGY_PER_LAYER, ENERGY_LAYER, ENERGY_LAYER_UJ, OLD_ENERGY_MEMORY_PARTS,
               OLD_ENERGY_ARITH)  # besides the EnergySettings fields (bench.energy.settings)

SPIKE_UNIT = "spikes / image"
PAIR_UNIT = "pairs / image"  # (neuron, timestep) pairs
ENERGY_UNIT = "µJ / image"
FRACTION = "fraction 0..1"

# summary.json of a run, in the order bench.record writes it
SUMMARY_FIELDS = (
    Field(CONFIG, "", "the resolved config (config.json without its provenance fields)"),
    Field(RUN_ID, "", "the run folder's name"),
    Field(STUDY, "", "the study folder's name"),
    Field(TRIAL, "", "Optuna trial number, or null outside a sweep"),
    Field(STATUS, "", "`running`, then `completed`, `failed`, `diverged` (the loss went NaN "
                      "or infinite), `pruned` (stopped early by the sweep's pruner) or "
                      "`interrupted` (a signal or a full disk stopped it: it can be resumed)"),
    Field(ERROR, "", "one-line error of a run that did not complete, else null"),
    Field(TRACEBACK, "", "a sweep trial that failed on a bug (not a user error): the full Python "
                         "traceback; absent otherwise", always=False),
    Field(TEST_ACC, FRACTION, "top-1 accuracy on the test set"),
    Field(TEST_LOSS, "nats", "mean cross-entropy on the test set"),
    Field(VAL_ACC, FRACTION, "top-1 accuracy at the last validation epoch"),
    Field(EPOCHS_COMPLETED, "epochs", "training epochs finished"),
    Field(DURATION_S, "s", "wall-clock time of the run (of its last start, when resumed)"),
    Field(SPIKES_PER_IMAGE, SPIKE_UNIT,
          "probe -> summed spike counts z per test image (all neurons and timesteps)"),
    Field(SPIKES_TOTAL_PER_IMAGE, SPIKE_UNIT,
          "sum of `spikes_per_image` over all probes (residual sums included)"),
    Field(NONZERO_PER_IMAGE, PAIR_UNIT,
          "probe -> non-zero (neuron, timestep) pairs per test image"),
    Field(NONZERO_TOTAL_PER_IMAGE, PAIR_UNIT, "sum of `nonzero_per_image`"),
    Field(MAX_SPIKE_PER_PROBE, "spike count z", "probe -> largest single z seen on the test set"),
    Field(ENERGY_UJ_PER_IMAGE, ENERGY_UNIT,
          "estimated energy per test image under the run's `energy_*` settings"),
    Field(ENERGY, "", "the estimate's settings, operation counts and terms in µJ / image: see "
                      "\"Energy\""),
    Field(GRAD_NORM_PER_BLOCK, "L2 norm", "group -> mean gradient norm over the last epoch"),
    Field(CHECKPOINTS, "", "checkpoint files kept in the run folder, e.g. "
                           "`{\"last\": \"last.ckpt\", \"best\": \"best.ckpt\"}`"),
    Field(WANDB_DIR, "", "the offline W&B run folder (sync it with `wandb sync DIR`), or null"),
    Field(WANDB_RUN, "", "the W&B run path, `entity/project/id` (offline: `project/id`), or null"),
)
# an eval record's summary.json: the run fields measured on its split (no `checkpoints`,
# `wandb_run`), then these
EVAL_FIELDS = (
    Field(EVAL_OF, "", "run id of the measured run"),
    Field(EVAL_ID, "", "the eval folder's name, `<split>-<checkpoint>-<time>-<random>`"),
    Field(CHECKPOINT, "", "`best`, `last` or the .ckpt file given"),
    Field(SPLIT, "", "`test` or `val`: the split measured (`test_acc` is null for `val`)"),
    Field(SETS, "", "the `--set` overrides of the eval"),
)
SUMMARY_SCALARS = (TEST_ACC, VAL_ACC, TEST_LOSS, SPIKES_TOTAL_PER_IMAGE, NONZERO_TOTAL_PER_IMAGE,
                   ENERGY_UJ_PER_IMAGE, EPOCHS_COMPLETED, DURATION_S)  # numbers or null
SUMMARY_OBJECTS = (CONFIG, SPIKES_PER_IMAGE, NONZERO_PER_IMAGE, MAX_SPIKE_PER_PROBE, ENERGY,
                   GRAD_NORM_PER_BLOCK)  # JSON objects when present

# ---- config.json: the config keys (README "Run configuration") and its provenance ----------

VERSIONS, GIT_COMMIT, HOST, ARGV = "versions", "git_commit", "host", "argv"
PROVENANCE_FIELDS = (
    Field(VERSIONS, "", "versions of python, bench, torch, lightning, spikingjelly, wandb, optuna"),
    Field(GIT_COMMIT, "", "the commit of bench's checkout, or null"),
    Field(HOST, "", "host name"),
    Field(ARGV, "", "the command line"),
    Field(TRIAL, "", "Optuna trial number, or null outside a sweep"),
)
PROVENANCE = tuple(f.name for f in PROVENANCE_FIELDS)

# ---- the CSV files --------------------------------------------------------------------------

EPOCH, STEP, TIME_S = "epoch", "step", "time_s"
ACC, LOSS = "acc", "loss"  # Lightning logs them per split: logged("val", ACC) == "val/acc"


def logged(split: str, name: str) -> str:
    """A metric logged per split and epoch, as metrics.csv, W&B and a sweep name it."""
    return f"{split}/{name}"


METRICS_FIELDS = (  # metrics.csv: one row per epoch; empty where not measured
    Field(EPOCH, "", "training epoch, from 0"),
    Field(STEP, "steps", "optimiser steps so far"),
    Field(logged("train", LOSS), "nats", "mean cross-entropy over the epoch's training images"),
    Field(logged("train", ACC), FRACTION, "top-1 accuracy over the epoch's training images"),
    Field(logged("val", LOSS), "nats", "mean cross-entropy on the validation set"),
    Field(logged("val", ACC), FRACTION, "top-1 accuracy on the validation set"),
    Field(logged("val", SPIKES_TOTAL_PER_IMAGE), SPIKE_UNIT,
          "spikes per validation image, all probes"),
    Field(logged("val", ENERGY_UJ_PER_IMAGE), ENERGY_UNIT,
          "estimated energy per validation image"),
    Field(TIME_S, "s", "time of the training epoch, validation included"),
)

# the columns Lightning logs (the others are the epoch's counters and time)
EPOCH_METRICS = [f.name for f in METRICS_FIELDS if f.name not in (EPOCH, STEP, TIME_S)]

PROBE, KIND, INDEX, LEVELS, NEURONS = "probe", "kind", "index", "levels", "neurons"
MAX_SPIKE, RATE = "max_spike", "rate"
LAYERS_FIELDS = (  # layers.csv: one row per (split, epoch, probe)
    Field(SPLIT, "", "`val` or `test`"),
    Field(EPOCH, "", "validation epoch (test rows: epochs trained)"),
    Field(PROBE, "", "probe point, e.g. `block3.sn1`, or `sum3` (the exit of residual block 3)"),
    Field(KIND, "", "`neuron`, `barrier` or `sum`"),
    Field(INDEX, "", "depth order of the probe points"),
    Field(LEVELS, "", "N of the probe point: its spike count is z = round(N x output)"),
    Field(NEURONS, "elements", "per image per timestep"),
    Field(SPIKES_PER_IMAGE, SPIKE_UNIT, "summed spike counts z over all neurons and timesteps"),
    Field(NONZERO_PER_IMAGE, PAIR_UNIT, "(neuron, timestep) pairs with z > 0"),
    Field(MAX_SPIKE, "spike count z", "largest single z seen"),
    Field(RATE, "spikes / neuron / timestep", "`spikes_per_image` / (`neurons` x T)"),
)

GROUP, GRAD_NORM = "group", "grad_norm"
TOTAL_GROUP = "total"  # the grads.csv group of the whole model
GRADS_FIELDS = (  # grads.csv: one row per (step, group), every `grad_every` steps
    Field(STEP, "steps", "optimiser step"),
    Field(GROUP, "", "a block of the model (`bench.models.layer_groups`); `total`: the whole "
                     "model"),
    Field(GRAD_NORM, "L2 norm", "of the group's parameter gradients, before the optimiser step"),
)

METRIC_COLUMNS = [f.name for f in METRICS_FIELDS]
LAYER_COLUMNS = [f.name for f in LAYERS_FIELDS]
GRAD_COLUMNS = [f.name for f in GRADS_FIELDS]
CSV_COLUMNS = {METRICS_FILE: METRIC_COLUMNS, LAYERS_FILE: LAYER_COLUMNS, GRADS_FILE: GRAD_COLUMNS}


# ---- a sweep's Optuna study: what bench keeps in its attributes ----------------------------

# trial user attributes (besides the summary's headline fields, bench.sweep.attrs.HEADLINE, and
# the replicate keys' values); RUN_ID, ERROR and TRACEBACK as in summary.json
SLOT = "slot"  # the trial's place in the sweep's grid: enqueueing dedupes by it
RUN_DIR = "run_dir"  # the trial's run folder
PROGRESS = "progress"  # live progress: {trial, epoch, epochs, metric, value, elapsed_s}
TRIAL_ATTRS = (SLOT, RUN_DIR, RUN_ID, ERROR, TRACEBACK, PROGRESS)
# study user attributes
SPEC_ATTR = "bench:spec"  # the resolved sweep (a dict), set by the creator
ENQUEUED_ATTR = "bench:enqueued"  # number of slots, set after enqueueing them
BEST_ATTR = "bench:best_configuration"  # the configuration with the best mean over replicates
DESCRIPTION_ATTR = "description"  # the sweep file's description
# system attributes (optuna-dashboard does not show them)
CREATOR_ATTR = "bench:creator"  # of the study: owner_info of the creating process
OWNER_ATTR = "bench:owner"  # of a trial: owner_info of the worker running it
STUDY_ATTRS = (SPEC_ATTR, ENQUEUED_ATTR, BEST_ATTR, DESCRIPTION_ATTR, CREATOR_ATTR, OWNER_ATTR)


def markdown_table(fields: tuple[Field, ...], what: str = "field") -> str:
    """The fields as README shows them: | field | unit | meaning |."""
    rows = [(what, "unit", "meaning"), ("---", "---", "---")]
    rows += [(f"`{f.name}`", f.unit, f.doc) for f in fields]
    return "\n".join("|" + "|".join(f" {c} " if c else " " for c in row) + "|" for row in rows)
