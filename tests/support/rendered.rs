//! A table rendered to files as capstan writes them for HAProxy: the config
//! and the map files its http frontend routes through.
//! Include it with `#[path = "support/rendered.rs"] mod rendered;`.

use std::path::{Path, PathBuf};

use capstan::desired::DesiredState;
use capstan::model::RoutesFile;
use capstan::render::{HaproxyConfig, render_desired};

/// Renders `routes` into `dir`: `haproxy.cfg`, and the map files it names in
/// `dir/maps` (`haproxy -c` opens them). Returns the config's path and the config.
pub fn write_rendered(dir: &Path, routes: &RoutesFile) -> (PathBuf, HaproxyConfig) {
    let maps = dir.join("maps");
    let config = render_desired(&DesiredState::new(routes.clone()).with_maps_dir(maps.clone()));
    std::fs::create_dir_all(&maps).unwrap();
    for map in &config.maps {
        std::fs::write(&map.path, map.text()).unwrap();
    }
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config.to_string()).unwrap();
    (file, config)
}
