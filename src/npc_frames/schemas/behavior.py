"""Schemas of the behavior components: sessions, subjects, epochs, trials, performance, the other
interval tables, licks, rewards, running speed.

One :class:`~npc_frames.schemas.Column` per column: dtype, one-line description (copied to NWB) and
unit. Times are seconds on the session clock: the sync clock when a sync file exists, else the task
clock (seconds since the first frame of the task's stim file); see docs/formats.md.

Decision on the reference's "all-NaN float columns are omitted" **[quirk]** (docs/quirks.md): we keep
a stable schema. Every declared column is present in every frame; a column with nothing to report (e.g.
the opto columns of a session without opto) holds nulls (strings, lists, ints) or NaN (floats).
"""

from __future__ import annotations

import polars as pl

from npc_frames.schemas import Column, Schema, register

__all__ = [
    "AUD_RF_MAPPING",
    "EPOCHS",
    "INVALID_TIMES",
    "LICKS",
    "LUMINANCE_TEST",
    "OPTOTAGGING",
    "PERFORMANCE",
    "QUIESCENT_VIOLATIONS",
    "REWARDS",
    "RUNNING_SPEED",
    "SESSIONS",
    "SUBJECTS",
    "TRIALS",
    "VIS_RF_MAPPING",
]

F64 = pl.Float64
I64 = pl.Int64
STR = pl.String
BOOL = pl.Boolean
S = "s"

SESSION_ID = Column("session_id", STR, "canonical session id, `<subject>_<YYYY-MM-DD>[_<idx>]`")


def _t(name: str, description: str, *, required: bool = True) -> Column:
    return Column(name, F64, description, required=required, unit=S)


def _b(name: str, description: str) -> Column:
    return Column(name, BOOL, description)


def _flag(name: str, description: str) -> Column:
    """A nullable flag: null when its input is absent (see docs/formats.md)."""
    return Column(name, BOOL, description + " (null when unknown)", required=False)


# ------------------------------------------------------------------------------------------------
SESSIONS = Schema(
    name="sessions",
    description="one row per session: identity, wall-clock start, rig, experimenter and session flags",
    key=("session_id",),
    columns=(
        SESSION_ID,
        Column("subject_id", I64, "labtracks subject id"),
        Column("date", pl.Date, "session date (local)"),
        Column("session_idx", I64, "index of the session for this subject on this date (0 first)"),
        Column(
            "session_start_time",
            pl.Datetime("us", "America/Los_Angeles"),
            "wall-clock start of the session clock (sync start, else task start) in "
            "America/Los_Angeles; unlike the reference NWB the sub-second part is kept, so that "
            "session_start_time + t gives the true wall time of a frame time t",
        ),
        Column("rig", STR, "rig name from the task file (`rigName`, e.g. NP3)", required=False),
        Column(
            "experimenter",
            STR,
            "experimenter from debug.log `User('first.last')` (last one), title-cased; null "
            "when the log names none (the reference's per-date/rig defaults are not guessed)",
            required=False,
        ),
        Column(
            "institution",
            STR,
            "Neural Circuits & Behavior | MindScope program | Allen Institute for Neural Dynamics",
        ),
        Column("task_version", STR, "`taskVersion` of the DynamicRouting1 file", required=False),
        Column("source_script", STR, "task script URL (`githubTaskScript`)", required=False),
        Column(
            "session_type",
            STR,
            "first matching type: templeton, context naive, muscimol perturbation, muscimol "
            "control, opto perturbation, opto control, habituation, training, else brainwide "
            "survey for ephys; null when an earlier flag is unknown or a non-ephys session "
            "matches none",
            required=False,
        ),
        Column(
            "session_description",
            STR,
            "one-sentence description built from the flags (without the experiment day, which "
            "the session_days view gives)",
        ),
        Column(
            "keywords",
            pl.List(STR),
            "keywords / session tags; day_<n> is added by the session_days view",
        ),
        _b("is_ephys", "Open Ephys record nodes were found (manifest session_kwargs override)"),
        _b("is_sync", "a sync file was found; times are on the sync clock"),
        _b("is_video", "behavior videos were found"),
        _b("is_task", "a DynamicRouting1 task file with valid timing was found"),
        _b("is_sorted", "spike-sorting output was found for an ephys session"),
        _b("is_lfp", "LFP is available (= is_ephys unless overridden)"),
        _b("is_surface_channels", "a surface-channel (deep-insertion) recording"),
        _b("is_annotated", "CCF annotation files were found for the probes"),
        _flag("is_wild_type", "the genotype contains wt/wt (subject.json, else training records)"),
        _flag("is_opto", "task with opto trials in a mouse that is not wild type"),
        _flag("is_opto_control", "task with opto trials in a wild-type mouse"),
        _flag("is_production", "manifest flag; True for a tracked session unless set false"),
        _flag("is_injection_perturbation", "manifest flag; False for a tracked session unless set"),
        _flag("is_injection_control", "manifest flag; False for a tracked session unless set"),
        _flag(
            "is_templeton",
            "Templeton project: manifest project, else subject absent from the training records, "
            "else the task version contains 'templeton'",
        ),
        _flag("is_context_naive", "manifest flag, else = is_templeton"),
        _flag(
            "is_naive",
            "first training day (training-record row 1, or no row on this date); False for "
            "Templeton",
        ),
        _flag("is_training", "task without ephys on a rig whose name contains neither NP nor OG"),
        _flag("is_hab", "task without ephys on an NP rig, without opto trials (habituation)"),
        _flag(
            "is_photodiode",
            "sync and task: the task's display times come from the photodiode (False: flip times)",
        ),
        _flag("is_first_block_aud", "the rewarded stimulus of the first block is auditory"),
        _flag("is_first_block_vis", "the rewarded stimulus of the first block is visual"),
        _flag("is_late_autorewards", "auto-rewards at `autoRewardOnsetFrame` == 60 (late)"),
        _flag("is_engaged", ">= 4 blocks with >= 10 contingent rewards"),
        _flag(
            "is_good_behavior",
            ">= 2 vis and >= 2 aud blocks (Templeton: any 4) with cross-modal d' >= 1, >= 10 "
            "trials and >= 10 contingent rewards",
        ),
        _flag("is_bad_behavior", "engaged and not good behavior"),
        _flag(
            "is_stage_5_passed",
            "the training records show two consecutive stage-5 sessions before this date each "
            "with more than 3 blocks of d' >= 1.5 (same and other modality); False for Templeton",
        ),
        Column("project", STR, "project of the manifest entry", required=False),
        Column("manifest_day", I64, "experiment day given by the manifest entry", required=False),
        Column(
            "behavior_day",
            I64,
            "training-record row number of this session's date (1 = first training day)",
            required=False,
        ),
        Column("notes", STR, "free-text notes from the session manifest", required=False),
        Column(
            "issues", pl.List(STR), "issue links/descriptions from the manifest", required=False
        ),
        Column(
            "session_kwargs",
            STR,
            "the manifest entry's session_kwargs (flag overrides, probe_letters_to_skip, ...) "
            "and entry-level is_*/rig overrides, as a JSON object with sorted keys; null when "
            "the entry gives none",
            required=False,
        ),
    ),
)

SUBJECTS = Schema(
    name="subjects",
    description="the subject of the session: id, species, sex, age, genotype",
    key=("session_id",),
    columns=(
        SESSION_ID,
        Column("subject_id", I64, "labtracks subject id"),
        Column("species", STR, "Mus musculus"),
        Column("sex", STR, "M, F or U", required=False),
        Column("date_of_birth", pl.Date, "date of birth", required=False),
        Column("age", STR, "ISO-8601 age at session start, `P<days>D`", required=False),
        Column("genotype", STR, "genotype", required=False),
        Column("strain", STR, "background strain or breeding group", required=False),
        Column("is_wild_type", BOOL, "genotype contains `wt/wt`", required=False),
    ),
)

EPOCHS = Schema(
    name="epochs",
    description="one row per stim file with valid timing, sorted by start time",
    key=("start_time",),
    columns=(
        SESSION_ID,
        _t("start_time", "first display time of the stim file's frames"),
        _t("stop_time", "last display time of the stim file's frames"),
        Column("script_name", STR, "stim file stem up to the first underscore"),
        Column("stim_file", STR, "file name of the TaskControl stim file this epoch comes from"),
        Column(
            "tags",
            pl.List(STR),
            "task, opto_perturbation/opto_control, rewards, spontaneous, mapping, "
            "optotagging/optotagging_control, invalid_times",
        ),
        Column("interval_names", pl.List(STR), "names of the interval tables fed by this file"),
        Column("notes", STR, "`includes invalid times: <reasons>` or empty", required=False),
    ),
)

# ------------------------------------------------------------------------------------------------
TRIALS = Schema(
    name="trials",
    description="visual-auditory task-switching behavior trials (DynamicRouting1 task)",
    key=("trial_index",),
    columns=(
        SESSION_ID,
        _t("start_time", "start of the trial = quiescent_start_time"),
        _t("stop_time", "flip time of the trial's last frame (`trialEndFrame`)"),
        _t(
            "quiescent_start_time",
            "flip time of stimulus frame - quiescentFrames: start of the last, unviolated "
            "quiescent window",
        ),
        _t("quiescent_stop_time", "input-data time of the frame before the stimulus frame"),
        _t(
            "stim_start_time",
            "visual/catch: display time of the stimulus frame; auditory: sound onset from the "
            "sync sound line (flip time of the stimulus frame without a recording)",
        ),
        _t(
            "stim_stop_time",
            "visual: display time of stimulus frame + trialVisStimFrames; catch: = stim_start_time; "
            "auditory: sound onset + waveform duration",
        ),
        _t(
            "opto_start_time",
            "opto onset from the sync opto line, else script time; NaN if no opto",
        ),
        _t("opto_stop_time", "opto offset from the sync opto line, else onset + trialOptoDur"),
        _t(
            "response_window_start_time",
            "input-data time of stimulus frame + responseWindow[0]",
        ),
        _t("response_window_stop_time", "flip time of stimulus frame + responseWindow[1]"),
        _t(
            "task_control_response_time",
            "input-data time of the task's response frame (NaN if no response); before "
            "2023-10-16 the task could count licks before the window start",
        ),
        _t(
            "response_time",
            "first lick-sensor rising edge strictly inside the response window (sync), else the "
            "task-control response time; can be NaN although is_response is True",
        ),
        _t("reward_time", "time of the reward delivered in the trial (NaN if none)"),
        _t(
            "timeout_start_time",
            "false alarms when incorrectTimeoutFrames > 0: input-data time of stimulus frame + "
            "responseWindow[1] + 1 (NaN otherwise; the reference infers timeouts from repeats)",
        ),
        _t("timeout_stop_time", "display time of the timeout start frame + incorrectTimeoutFrames"),
        _t(
            "post_response_window_start_time",
            "display time of the timeout stop frame if any, else of the response-window stop frame",
        ),
        _t(
            "post_response_window_stop_time",
            "display time of the post-response-window start frame + postResponseWindowFrames",
        ),
        Column("stim_name", STR, "stimulus: vis1, vis2, sound1, sound2 or catch"),
        Column(
            "grating_phase",
            F64,
            "phase of the grating (cycles); NaN for non-visual trials or files without it",
            unit="cycles",
        ),
        Column("block_index", I64, "0-based block of the trial"),
        Column("rewarded_modality", STR, "modality rewarded in the trial's block: vis or aud"),
        Column("trial_index", I64, "0-based index of the trial in the task file"),
        Column("trial_index_in_block", I64, "0-based index of the trial within its block"),
        Column(
            "opto_wavelength",
            I64,
            "wavelength (nm) of the trial's opto light source (first device if several); null "
            "without opto",
            unit="nm",
            nullable=True,
        ),
        Column(
            "opto_location_bregma_x",
            pl.List(F64),
            "galvo sessions: bregma x (mm) of each targeted location (one element per location; "
            "the reference explodes these into rows, we keep one row per trial)",
            unit="mm",
            nullable=True,
        ),
        Column(
            "opto_location_bregma_y",
            pl.List(F64),
            "galvo sessions: bregma y (mm) of each targeted location",
            unit="mm",
            nullable=True,
        ),
        Column("opto_duration", F64, "nominal opto duration `trialOptoDur` (s)", unit=S),
        Column(
            "opto_label",
            STR,
            "label of the opto target (`trialOptoLabel`; A-F -> probeA-F); null without opto",
            nullable=True,
        ),
        Column(
            "opto_power", F64, "opto power (mW) from the voltage and power calibration", unit="mW"
        ),
        Column(
            "opto_stim_name",
            STR,
            "`opto<k>_<label>`, k = index of the trial's unique opto waveform; '' without opto",
        ),
        Column("repeat_index", I64, "number of consecutive preceding repeats (0 if not a repeat)"),
        _b("is_response", "the subject licked in the response window (`trialResponse`)"),
        _b("is_correct", "hit, correct reject, or catch without response"),
        _b("is_incorrect", "miss, false alarm, or catch with response"),
        _b("is_hit", "response on a go trial"),
        _b("is_false_alarm", "response on a nogo trial"),
        _b("is_correct_reject", "no response on a nogo trial"),
        _b("is_miss", "no response on a go trial"),
        _b(
            "is_go",
            "stimulus is the block's rewarded stimulus (includes auto-reward-scheduled trials, "
            "unlike DynRoutData.goTrials)",
        ),
        _b("is_nogo", "non-catch, non-multimodal stimulus that is not the block's rewarded one"),
        _b("is_rewarded", "a reward was delivered (`trialRewarded`)"),
        _b("is_noncontingent_reward", "an auto-reward was delivered"),
        _b("is_contingent_reward", "a reward was earned by responding (rewarded and not auto)"),
        _b("is_reward_scheduled", "an auto-reward was scheduled"),
        _b(
            "is_instruction",
            "trial_index_in_block < newBlockGoTrials + newBlockNogoTrials + newBlockCatchTrials",
        ),
        _b("is_aud_stim", "stimulus name contains 'sound'"),
        _b("is_vis_stim", "stimulus name contains 'vis'"),
        _b("is_catch", "catch trial (no stimulus)"),
        _b("is_target", "stimulus is rewarded in some block"),
        _b("is_aud_target", "auditory target stimulus"),
        _b("is_vis_target", "visual target stimulus"),
        _b("is_nontarget", "stimulus is never rewarded (non-catch)"),
        _b("is_aud_nontarget", "auditory stimulus never rewarded"),
        _b("is_vis_nontarget", "visual stimulus never rewarded"),
        _b("is_vis_rewarded", "the block's rewarded stimulus is visual"),
        _b("is_aud_rewarded", "the block's rewarded stimulus is auditory"),
        _b("is_block_switch", "first trial of a block other than the first block"),
        _b("is_repeat", "trial repeats the previous trial's stimulus after a false alarm"),
        _b("is_opto", "opto stimulation in the trial (opto_start_time is not NaN)"),
        Column(
            "is_single_opto_location",
            BOOL,
            "galvo opto trial targeting exactly one location (the reference's flag is True for "
            ">1 location [quirk]; we implement the evident intent); null for non-galvo trials",
            nullable=True,
        ),
        _b(
            "is_task_control_correct",
            "the task's response agrees with the sync licks: isnan(response_time) == "
            "isnan(task_control_response_time) (the reference's flag is True where they "
            "disagree [quirk]; we implement the evident intent)",
        ),
    ),
)

PERFORMANCE = Schema(
    name="performance",
    description="behavioral performance per block of the trials table",
    key=("block_index",),
    columns=(
        SESSION_ID,
        _t("start_time", "start of the block's first trial"),
        _t("stop_time", "stop of the block's last trial"),
        Column("block_index", I64, "0-based block"),
        Column("rewarded_modality", STR, "modality rewarded in the block: vis or aud"),
        Column("n_trials", I64, "number of trials in the block"),
        Column("n_responses", I64, "number of trials with a response"),
        Column("n_hits", I64, "number of hits"),
        Column("n_contingent_rewards", I64, "number of rewards earned by responding"),
        Column("hit_rate", F64, "hits / go trials"),
        Column("false_alarm_rate", F64, "false alarms / nogo trials"),
        Column("catch_response_rate", F64, "responses on catch trials / catch trials"),
        _b("is_first_block_aud", "the first block's rewarded stimulus is auditory (session-wide)"),
        Column(
            "cross_modality_dprime",
            F64,
            "d' of hit rate vs false-alarm rate on the non-rewarded modality's target",
        ),
        Column(
            "signed_cross_modality_dprime",
            F64,
            "cross-modality d', positive in vis blocks and negative in aud blocks",
        ),
        Column("vis_dprime", F64, "d' of hits on vis target vs false alarms on vis non-target"),
        Column("aud_dprime", F64, "d' of hits on aud target vs false alarms on aud non-target"),
        Column(
            "vis_target_response_rate",
            F64,
            "response rate on non-instruction vis-target trials without a scheduled reward",
        ),
        Column(
            "vis_nontarget_response_rate",
            F64,
            "response rate on non-instruction vis-nontarget trials",
        ),
        Column(
            "aud_target_response_rate",
            F64,
            "response rate on non-instruction aud-target trials without a scheduled reward",
        ),
        Column(
            "aud_nontarget_response_rate",
            F64,
            "response rate on non-instruction aud-nontarget trials",
        ),
    ),
)

_RF_COMMON = (
    _t("start_time", "flip time of the trial's stimulus frame"),
    _t("stop_time", "flip time of stimulus frame + stimFrames + interStimFrames"),
    _t("stim_start_time", "vis: display time of the stimulus frame; aud: sound onset"),
    _t("stim_stop_time", "vis: display time of stimulus frame + stimFrames; aud: sound offset"),
    Column("trial_index", I64, "index in the full RFMapping trial list (gaps within a subset)"),
)

VIS_RF_MAPPING = Schema(
    name="vis_rf_mapping",
    description="visual receptive-field mapping trials: small gratings and full-field flashes",
    key=("start_time",),
    columns=(
        SESSION_ID,
        *_RF_COMMON,
        _b("is_small_field_grating", "a small drifting grating was shown"),
        Column("grating_orientation", F64, "grating orientation (deg)", unit="deg"),
        Column("grating_x", F64, "grating centre x (pixels from screen centre)", unit="px"),
        Column("grating_y", F64, "grating centre y (pixels from screen centre)", unit="px"),
        _b("is_full_field_flash", "a full-field flash was shown"),
        Column("flash_contrast", F64, "flash contrast (-1, 0, 1)"),
    ),
)

AUD_RF_MAPPING = Schema(
    name="aud_rf_mapping",
    description="auditory receptive-field mapping trials: tones and AM noise",
    key=("start_time",),
    columns=(
        SESSION_ID,
        *_RF_COMMON,
        _b("is_AM_noise", "amplitude-modulated noise (includes 0 Hz modulation)"),
        _b("is_white_noise", "band-limited noise"),
        _b("is_pure_tone", "pure tone"),
        Column("freq", F64, "tone frequency or AM modulation frequency (Hz)", unit="Hz"),
    ),
)

OPTOTAGGING = Schema(
    name="optotagging",
    description="optotagging trials: laser pulses for identifying opsin-expressing units",
    key=("start_time",),
    columns=(
        SESSION_ID,
        _t("start_time", "stim_start_time - analysis period"),
        _t("stop_time", "stim_stop_time + analysis period"),
        _t("stim_start_time", "opto marker rising edge on sync"),
        _t("stim_stop_time", "matched opto marker falling edge on sync"),
        _t("baseline_start_time", "= start_time"),
        _t("baseline_stop_time", "stim_start_time - 1.5 ms censor period"),
        _t("response_start_time", "stim_start_time + 1.5 ms censor period"),
        _t("response_stop_time", "stim_stop_time - 1.5 ms censor period"),
        Column("trial_index", I64, "0-based trial index within its OptoTagging file"),
        Column("stim_name", STR, "waveform: square or sine"),
        Column("nominal_duration", F64, "nominal pulse duration `trialOptoDur`", unit=S),
        Column("location", STR, "target label (A-F -> probeA-F)", required=False),
        Column("bregma_x", F64, "bregma x (mm) of the target", required=False, unit="mm"),
        Column("bregma_y", F64, "bregma y (mm) of the target", required=False, unit="mm"),
        Column("power", F64, "laser power (mW)", unit="mW", required=False),
        Column("wavelength", I64, "wavelength (nm) parsed from the device name", unit="nm"),
    ),
)

LUMINANCE_TEST = Schema(
    name="luminance_test",
    description="luminance test trials: full-screen levels",
    key=("start_time",),
    columns=(
        SESSION_ID,
        _t("start_time", "flip time of trialStartFrame"),
        _t("stop_time", "flip time of trialStartFrame + framesPerLevel"),
        Column("trial_index", I64, "0-based trial index within its file"),
        Column("level", F64, "window colour (-1..1), rounded to 3 decimals"),
    ),
)

INVALID_TIMES = Schema(
    name="invalid_times",
    description="time intervals to be removed from analysis",
    key=("start_time",),
    columns=(
        SESSION_ID,
        _t("start_time", "start of the invalid interval"),
        _t("stop_time", "stop of the invalid interval (-1 in the source = end of the recording)"),
        Column("reason", STR, "why the interval is invalid"),
    ),
)

LICKS = Schema(
    name="licks",
    description="lick-sensor contacts (sync lick_sensor line, else task lickFrames)",
    key=("timestamps",),
    columns=(
        SESSION_ID,
        _t("timestamps", "onset of each lick-sensor contact"),
        _t("duration", "contact duration (NaN without sync)"),
        Column(
            "is_likely_lick",
            BOOL,
            "contact <= 0.5 s (longer events are likely grooming); null without sync",
            nullable=True,
        ),
    ),
)

REWARDS = Schema(
    name="rewards",
    description="water rewards delivered (solenoid line on sync, else task rewardFrames)",
    key=("timestamps",),
    columns=(
        SESSION_ID,
        _t("timestamps", "reward delivery time"),
        _t("duration", "solenoid open time (NaN when not recorded)"),
        _b("is_solenoid_time", "timestamps are solenoid-line edges (else frame flip times)"),
    ),
)

RUNNING_SPEED = Schema(
    name="running_speed",
    description="running speed, zero-phase 3rd-order Butterworth low-pass at 4 Hz per stim file",
    key=("timestamps",),
    columns=(
        SESSION_ID,
        _t("timestamps", "midpoint between the two encoder reads of each speed sample"),
        Column("speed", F64, "filtered running speed", unit="cm/s"),
    ),
)

QUIESCENT_VIOLATIONS = Schema(
    name="quiescent_violations",
    description="licks during the pre-stimulus quiescent period that restarted it",
    key=("timestamps",),
    columns=(
        SESSION_ID,
        _t("timestamps", "input-data time of each quiescent-violation frame"),
    ),
)

register(
    [
        SESSIONS,
        SUBJECTS,
        EPOCHS,
        TRIALS,
        PERFORMANCE,
        VIS_RF_MAPPING,
        AUD_RF_MAPPING,
        OPTOTAGGING,
        LUMINANCE_TEST,
        INVALID_TIMES,
        LICKS,
        REWARDS,
        RUNNING_SPEED,
        QUIESCENT_VIOLATIONS,
    ]
)
