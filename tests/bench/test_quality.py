"""The quality suite through Tuner.fit(): a seed reproduces its best-so-far curve bit for
bit, and the curve is the anytime best over the budget."""
import pytest

from bench.quality import ResultBudget, best_so_far, main, quartiles, render_markdown, run_one

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.mark.parametrize("algorithm, problem, budget", [
    ("random", "branin", 12),
    ("tpe", "hartmann6", 12),
    ("asha", "rosenbrock4", 40),
    ("pbt", "pbt_toy", 400),
    ("hyperband", "branin", 60),
])
def test_the_same_seed_gives_the_same_curve(algorithm, problem, budget):
    first = run_one(algorithm, problem, seed=3, budget=budget)
    second = run_one(algorithm, problem, seed=3, budget=budget)
    assert first == second  # exact floats, not approximately
    assert len(first) == budget
    assert run_one(algorithm, problem, seed=4, budget=budget) != first


def test_a_searcher_curve_is_the_running_best_of_exact_function_values():
    curve = run_one("random", "rosenbrock4", seed=0, budget=10)
    assert all(b <= a for a, b in zip(curve, curve[1:]))
    assert curve[-1] >= 0.0  # f itself (optimum 0), no convergence term added


def test_a_scheduler_run_ends_when_its_iteration_budget_is_spent():
    stopper = ResultBudget(3)
    assert [stopper("t", {}) or stopper.stop_all() for _ in range(4)] == [False, False, True, True]
    # ASHA gets as many trials as the budget could start; the run still ends at the budget
    curve = run_one("asha", "branin", seed=0, budget=30)
    assert len(curve) == 30


def test_best_so_far_keeps_the_last_best_when_a_run_ends_early():
    assert best_so_far([5.0, 7.0, 2.0], "min", 5) == [5.0, 5.0, 2.0, 2.0, 2.0]
    assert best_so_far([1.0, 3.0, 2.0, 9.0], "max", 3) == [1.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="no results"):
        best_so_far([], "min", 3)


def test_quartiles_are_taken_over_seeds_at_each_budget_point():
    q = quartiles([[4.0, 1.0], [2.0, 1.0], [3.0, 0.0], [1.0, 0.0], [5.0, 2.0]])
    assert q == {"q1": [2.0, 0.0], "median": [3.0, 1.0], "q3": [4.0, 1.0]}


def test_unknown_names_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown algorithm 'annealing'; known: random, tpe"):
        run_one("annealing", "branin", seed=0)
    with pytest.raises(ValueError, match="unknown problem 'ackley'"):
        run_one("fifo", "ackley", seed=0)
    with pytest.raises(ValueError, match="searchers run on branin"):
        run_one("random", "pbt_toy", seed=0)
    with pytest.raises(SystemExit):
        main(["--algorithms", "annealing"])


def test_the_table_shows_final_best_median_and_iqr():
    report = {
        "command": "python -m bench.quality", "seeds": 3, "machine": {"git_rev": "abc"},
        "problems": ["branin"], "searchers": ["random"], "schedulers": [],
        "budgets": {"searchers": {"branin": 4}, "schedulers": {"branin": 8}},
        "results": {"random/branin": {"curves": [], "final": {"median": 0.5, "q1": 0.45, "q3": 0.9}}},
    }
    md = render_markdown(report)
    assert "| random | 0.5 [0.45 – 0.9] |" in md
    assert "branin (budget 4 trials; optimum 0.397887)" in md


def test_population_schedulers_see_their_population_while_one_trial_runs():
    # One trial at a time, yet PBT's population takes turns and exploits: its curve is not
    # the fixed configs' curve (it would be if each trial were created after the last ended)
    assert run_one("pbt", "pbt_toy", seed=0, budget=400) != run_one("fifo", "pbt_toy", seed=0, budget=400)
    assert run_one("hyperband", "branin", seed=0, budget=200) != run_one("fifo", "branin", seed=0, budget=200)
