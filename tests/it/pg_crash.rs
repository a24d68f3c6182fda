//! Crash safety on the PostgreSQL repository: a server killed (SIGKILL) in the middle of a
//! run leaves, in the database itself, no target without its link, no link without its
//! target and no second link for any target (a target and its link commit together).

use crate::helpers::*;

#[test]
fn pg_sigkill_mid_run_leaves_every_target_linked_once() {
    on_postgres("pg_crash", || {
        // Stopped at a known point (the test hold, after three units committed), not by
        // hoping a big input is still running when the kill comes.
        let n = 2_000;
        let hold = TempDir::new("pg-crash-hold");
        let hold_dir = hold.0.display().to_string();
        let config = format!("{HR}\n[recon]\nbatch_size = 100\n");
        let mut s = Server::start_with_env(
            &config,
            &[("data/hr.csv", &format!("{HEADER}{}", people(n, 1)))],
            &[("RECOND_TEST_HOLD_DIR", &hold_dir)],
        );
        std::fs::write(hold.0.join("gate"), "3").expect("gate");
        let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
        let rid = r.body["_id"].as_str().expect("id").to_string();
        wait_held(&hold.0, std::time::Duration::from_secs(120));
        s.wait_processed(&rid, 300, "three units committed");
        s.kill();
        let url = s.repository.clone().expect("the server ran on PostgreSQL");
        let mut c = crate::pg_shared::client(&url);
        let count = |c: &mut postgres::Client, sql: &str| -> i64 {
            c.query_one(sql, &[]).expect(sql).get(0)
        };
        let targets = count(
            &mut c,
            "SELECT COUNT(*) FROM recond_objects WHERE set_name = 'managed/user'",
        );
        assert!(
            (300..n as i64).contains(&targets),
            "killed mid-run: {targets} targets"
        );
        let unlinked = count(
            &mut c,
            "SELECT COUNT(*) FROM recond_objects o WHERE o.set_name = 'managed/user' \
             AND NOT EXISTS (SELECT 1 FROM recond_links l \
             WHERE l.link_type = 'hr' AND l.second_id = o.id)",
        );
        let dangling = count(
            &mut c,
            "SELECT COUNT(*) FROM recond_links l WHERE l.link_type = 'hr' AND NOT EXISTS \
             (SELECT 1 FROM recond_objects o WHERE o.set_name = 'managed/user' \
             AND o.id = l.second_id)",
        );
        let doubled = count(
            &mut c,
            "SELECT COUNT(*) FROM (SELECT second_id FROM recond_links \
             GROUP BY link_type, qualifier, second_id HAVING COUNT(*) > 1) d",
        );
        assert_eq!((unlinked, dangling, doubled), (0, 0, 0));
        // The restarted server finishes the job with nothing created twice.
        std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
        s.start_again();
        let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
        let again = s.wait_run(r.body["_id"].as_str().expect("id"));
        assert_eq!(again["state"], "SUCCESS", "{again}");
        let after = count(
            &mut c,
            "SELECT COUNT(*) FROM recond_objects WHERE set_name = 'managed/user'",
        );
        let links = count(
            &mut c,
            "SELECT COUNT(*) FROM recond_links WHERE link_type = 'hr'",
        );
        assert_eq!((after, links), (n as i64, n as i64));
    });
}
