"""Figure layout: many panels go in a grid of at most three per row (readable at paper width),
one legend above the panels, and vector copies that regenerate byte for byte."""
import matplotlib

matplotlib.use("Agg")

from mosaic.analysis import plots  # noqa: E402


def rows(workloads):
    return [{"workload": w, "arm": arm, "expert_s": "100", "aggregator_s": "50", "paper_expert_s": "",
             "paper_aggregator_s": ""} for w in workloads for arm in ("baseline", "mosaic")]


def test_six_workloads_make_a_two_by_three_grid_not_a_strip():
    fig = plots.decomposition_figure(rows([f"w{i}" for i in range(6)]))
    width, height = fig.get_size_inches()
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and width <= 11 and height >= 5
    assert len({round(ax.get_position().y0, 3) for ax in visible}) == 2     # two rows
    # The legend is the figure's, above the panels: it overlaps no panel.
    (legend,) = fig.legends
    box = legend.get_window_extent(fig.canvas.get_renderer())
    assert all(not box.overlaps(ax.get_window_extent()) for ax in visible)


def test_four_panels_hide_the_unused_cells():
    fig, axes = plots.panel_grid(4)
    assert len(axes) == 4 and sum(ax.get_visible() for ax in fig.axes) == 4 and len(fig.axes) == 6


def test_seed_walls_label_every_seed_once_per_workload():
    data = [{"workload": w, "seed": str(s), "expert_stage_s": "10", "paper_expert_stage_s": "12" if w == "a" else ""}
            for w in ("a", "b") for s in range(3)]
    fig = plots.seed_walls_figure(data)
    for ax in [a for a in fig.axes if a.get_visible()]:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["seed 0", "seed 1", "seed 2"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ours", "paper"]
