"""Agent graphs: MoA topologies beyond MOSAIC's flat pipeline (topology=dense|tree), each query a
graph of agent requests released as their precursors finish (shape.py: the graph; outcomes.py:
what each agent answers, how confidently and at what length; early_exit.py: when a cluster stops;
placement.py: which worker serves which model). A run of them: mosaic/run/graph_app.py; the
simulator executes them in mosaic/backends/sim/graph_pool.py."""
