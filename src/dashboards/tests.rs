use std::collections::HashSet;

use super::*;

fn panels(board: &Value) -> Vec<&Value> {
    board["panels"].as_array().unwrap().iter().collect()
}

#[test]
fn panels_tile_the_grid_without_overlapping_and_ids_are_unique() {
    for (file, board) in all("http://slo.slo:8080") {
        let mut cells = HashSet::new();
        let mut ids = HashSet::new();
        for p in panels(&board) {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{file}: id {} twice", p["id"]);
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24, "{file}: {} runs past the grid", p["title"]);
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                assert!(cells.insert(cell), "{file}: {} overlaps another panel at {cell:?}", p["title"]);
            }
        }
    }
}

#[test]
fn every_variable_a_query_uses_is_defined() {
    let builtin = ["__rate_interval", "__interval", "__range", "__all"];
    let used = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    for (file, board) in all("http://slo.slo:8080") {
        let defined: HashSet<&str> =
            board["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        let text = board.to_string();
        for c in used.captures_iter(&text) {
            let name = &c[1];
            // `{{service}}` legends are Grafana's, `$labels`/`$value` are none of ours.
            assert!(defined.contains(name) || builtin.contains(&name), "{file}: ${name} is not a variable");
        }
    }
}
