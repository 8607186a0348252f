from reports.tables import Cell, highlight, render_latex, render_markdown


def test_bold_is_safe_and_blue_is_the_best_safe_and_close_cheaper_ones():
    cells = highlight({"A": (0.90, 1.5), "B": (0.70, 0.8), "C": (0.67, 0.3), "D": (0.60, 0.1),
                       "E": (0.69, 0.9)})
    assert not cells["A"].bold  # unsafe, however much reward
    assert cells["B"].bold and cells["B"].blue  # best safe reward
    assert cells["C"].blue  # within 0.05 of B and cheaper
    assert cells["E"].bold and not cells["E"].blue  # within 0.05 but costlier than B
    assert cells["D"].bold and not cells["D"].blue  # safe, too far below
    assert highlight({"A": (0.5, 1.0)})["A"] == Cell(0.5, 1.0)  # cost 1.0 is not safe


def test_no_safe_agent_no_highlight():
    cells = highlight({"A": (0.5, 2.0), "B": (0.1, 1.2)})
    assert not any(c.bold or c.blue for c in cells.values())


def test_renderers_map_decisions_to_markup():
    rows = [("BallRun", highlight({"BC-All": (0.6, 5.08), "BC-Safe": (0.27, 0.46)}))]
    md = render_markdown(["BC-All", "BC-Safe"], rows, "t")
    assert "| BallRun | 0.60 | 5.08 | **_0.27_** | **_0.46_** |" in md
    tex = render_latex(["BC-All", "BC-Safe"], rows, "t")
    assert (r"BallRun & 0.60 & 5.08 & \textcolor{blue}{\textbf{0.27}} & "
            r"\textcolor{blue}{\textbf{0.46}} \\") in tex
