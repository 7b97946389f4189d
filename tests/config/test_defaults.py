"""What a setting would be untouched: the packaged default option and an option file's values."""
from mosaic.config.defaults import changed, default_option
from mosaic.config.schema import AggregationConfig, ModelsConfig, SchedulerConfig


def test_default_options_come_from_the_packaged_config():
    assert default_option("scheduler") == "engine_aware"
    assert default_option("topology") == "flat"
    assert default_option("no_such_group") is None


def test_an_option_files_own_values_are_not_changes():
    assert changed("scheduler", SchedulerConfig(name="engine_aware")) == []
    # tau067.yaml sets tau 0.6667: choosing it changes the option, not its tau
    assert changed("aggregation", AggregationConfig(name="tau067", tau=0.6667)) == ["aggregation.name"]
    assert changed("aggregation", AggregationConfig(name="tau067", tau=0.5)) == ["aggregation.name", "aggregation.tau"]


def test_changes_away_from_the_option_are_named_down_to_a_tables_keys():
    assert changed("scheduler", SchedulerConfig(name="engine_aware", node_limit=5, search_limit=3)) == [
        "scheduler.node_limit", "scheduler.search_limit"]
    # an option the package does not ship (the user's own config dir): the schema's defaults stand
    assert changed("scheduler", SchedulerConfig(name="mine", mip_gap=0.1)) == ["scheduler.name", "scheduler.mip_gap"]
    from omegaconf import OmegaConf

    from mosaic.config import CONF_DIR

    paper = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "models" / "paper.yaml"))
    m = ModelsConfig(name="paper", cache_dir=paper.get("cache_dir"), engine={**paper["engine"], "bogus": 1},
                     models=paper["models"])
    assert changed("models", m) == ["models.engine.bogus"]
