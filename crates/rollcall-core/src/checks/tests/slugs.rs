//! Slugs: the second URL form of Healthchecks (`/ping/<ping-key>/<slug>`), looked up by the
//! table, unique across checks, defaulting to the id when the id is a valid slug.

use super::*;

fn with_slug(id: &str, slug: Option<&str>) -> CheckSpec {
    CheckSpec { slug: slug.map(str::to_string), ..spec(id, period(3600, 300)) }
}

#[test]
fn a_slug_defaults_to_the_id_when_the_id_is_one() {
    let check = |id: &str, slug: Option<&str>, expected: Option<&str>| {
        assert_eq!(with_slug(id, slug).slug(), expected, "{id} {slug:?}");
    };
    check("backup", None, Some("backup"));
    check("db_dump-2", None, Some("db_dump-2"));
    check("Backup.DB", None, None);
    check("Backup.DB", Some("backup-db"), Some("backup-db"));
}

#[test]
fn slugs_are_validated_and_unique() {
    let mut h = Harness::new();
    h.checks.add(with_slug("backup", None), h.now, h.wall()).unwrap();
    h.checks.add(with_slug("NightlyDB", Some("nightly-db")), h.now, h.wall()).unwrap();
    assert_eq!(h.checks.by_slug("backup").map(|c| c.id), Some("backup"));
    assert_eq!(h.checks.by_slug("nightly-db").map(|c| c.id), Some("NightlyDB"));
    assert!(h.checks.by_slug("NightlyDB").is_none(), "an id that is not a slug is not one");

    // An explicit slug may not take another check's default one, nor the other way round.
    let clash = with_slug("other", Some("backup"));
    assert_eq!(h.checks.add(clash, h.now, h.wall()), Err(CheckError::DuplicateSlug("backup".into())));
    let clash = with_slug("nightly-db", None);
    assert_eq!(h.checks.add(clash, h.now, h.wall()), Err(CheckError::DuplicateSlug("nightly-db".into())));
    let bad = with_slug("bad", Some("Has.Dots"));
    let Err(CheckError::Invalid(error)) = h.checks.add(bad, h.now, h.wall()) else {
        panic!("a slug with dots is refused as invalid")
    };
    assert_eq!((error.check(), error.field()), (Some("bad"), CheckField::Slug));
    assert_eq!(
        error.to_string(),
        "check \"bad\": the slug \"Has.Dots\" may only contain a-z, 0-9, `-` and `_`"
    );

    // Renaming the slug frees the old one; removing the check frees its slug.
    h.checks.update("backup", with_slug("backup", Some("files")), h.now, h.wall()).unwrap();
    assert!(h.checks.by_slug("backup").is_none());
    assert_eq!(h.checks.by_slug("files").map(|c| c.id), Some("backup"));
    let taken = with_slug("NightlyDB", Some("files"));
    assert_eq!(
        h.checks.update("NightlyDB", taken, h.now, h.wall()),
        Err(CheckError::DuplicateSlug("files".into()))
    );
    assert!(h.checks.remove("backup"));
    assert!(h.checks.by_slug("files").is_none());
    h.checks.add(with_slug("again", Some("files")), h.now, h.wall()).unwrap();
}
