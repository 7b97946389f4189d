"""Model profiles: what the cost predictor and the simulator know of each model and of the engine.

lengths (output-length distributions), engine (one GPU's engine, TP scaling), models (a model's
profile, the profile set), cost_model (per-step latency, KV capacity, load time), session_cost (the
fitted T_m(N, mean, max)), difficulty (a dataset's answer/length coupling), loader (YAML files)."""
from mosaic.profiles.cost_model import GIB, CostModel, kv_capacity_tokens, load_time_s, tp_warmup_s
from mosaic.profiles.engine import EngineProfile, TensorParallelProfile
from mosaic.profiles.lengths import LengthComponent, LengthDistribution
from mosaic.profiles.loader import load_profiles, parse_profiles
from mosaic.profiles.models import COST_KEYS, ModelProfile, ProfileSet

__all__ = ["COST_KEYS", "GIB", "CostModel", "EngineProfile", "LengthComponent", "LengthDistribution", "ModelProfile",
           "ProfileSet", "TensorParallelProfile", "kv_capacity_tokens", "load_profiles", "load_time_s", "parse_profiles", "tp_warmup_s"]
