"""Model profiles: what the cost predictor and the simulator know of each model and of the engine.

lengths (output-length distributions), engine (one GPU's engine, TP scaling), models (a model's
profile, the profile set), sizing (KV capacity beside the weights, load and warm-up times),
session_cost (the fitted T_m(N, mean, max)), difficulty (a dataset's answer/length coupling), loader
(YAML files). Step costs are the engine layer's (mosaic/engine/)."""
from mosaic.profiles.engine import EngineProfile, TensorParallelProfile
from mosaic.profiles.lengths import LengthComponent, LengthDistribution
from mosaic.profiles.loader import load_profiles, parse_profiles
from mosaic.profiles.models import COST_KEYS, ModelProfile, ProfileSet
from mosaic.profiles.sizing import GIB, kv_capacity_tokens, load_time_s, tp_warmup_s

__all__ = ["COST_KEYS", "GIB", "EngineProfile", "LengthComponent", "LengthDistribution", "ModelProfile",
           "ProfileSet", "TensorParallelProfile", "kv_capacity_tokens", "load_profiles", "load_time_s", "parse_profiles", "tp_warmup_s"]
