//! Every word the fan's pages show, in one place per language. A new
//! language is one more `Text` and a line in `for_accept_language`.

/// The words of the waiting page and the demo origin, in one language.
#[derive(Debug)]
pub struct Text {
    /// The `lang` attribute.
    pub lang: &'static str,
    pub title: &'static str,
    pub join_heading: &'static str,
    pub join_intro: &'static str,
    pub join_button: &'static str,
    pub join_again: &'static str,
    pub left: &'static str,
    pub scheduled: &'static str,
    pub opens_at: &'static str,
    pub waiting_heading: &'static str,
    pub waiting_unnumbered: &'static str,
    pub position: &'static str,
    pub people_ahead: &'static str,
    pub estimated_wait: &'static str,
    pub wait_unknown: &'static str,
    pub minutes: &'static str,
    pub under_a_minute: &'static str,
    pub progress: &'static str,
    pub keep_open: &'static str,
    pub paused: &'static str,
    pub closed_waiting: &'static str,
    pub closed: &'static str,
    pub admitted_heading: &'static str,
    pub admitted: &'static str,
    pub admitted_no_origin: &'static str,
    pub continue_button: &'static str,
    pub leave_button: &'static str,
    pub ended_left: &'static str,
    pub ended_expired: &'static str,
    pub ended_abandoned: &'static str,
    pub ended_completed: &'static str,
    pub ended_failed: &'static str,
    pub not_found: &'static str,
    pub error_heading: &'static str,
    pub try_again: &'static str,
    pub refused_signature: &'static str,
    pub refused_puzzle: &'static str,
    pub refused_blocked: &'static str,
    pub already_joined: &'static str,
    pub unavailable: &'static str,
    pub puzzle_working: &'static str,
    pub puzzle_needs_script: &'static str,
    pub checkout_title: &'static str,
    pub checkout_intro: &'static str,
    pub checkout_until: &'static str,
    pub complete_button: &'static str,
    pub give_up_button: &'static str,
    pub checkout_completed: &'static str,
    pub checkout_failed: &'static str,
    pub checkout_no_token: &'static str,
    pub checkout_refused: &'static str,
}

pub const ENGLISH: Text = Text {
    lang: "en",
    title: "Waiting room",
    join_heading: "Join the line",
    join_intro: "Demand is high. Take a place in line and we will let you in as soon as it is your turn. Keep this page open.",
    join_button: "Join the line",
    join_again: "Join the line again",
    left: "You left the line. Your place went to the next person.",
    scheduled: "The sale has not started yet. Join now: when it opens, everyone who joined before is let in in a random order, ahead of later arrivals.",
    opens_at: "The sale opens at",
    waiting_heading: "You are in line",
    waiting_unnumbered: "Your place is being counted. This page updates by itself.",
    position: "Your position",
    people_ahead: "People ahead of you",
    estimated_wait: "Estimated wait",
    wait_unknown: "Not known yet",
    minutes: "min",
    under_a_minute: "Under a minute",
    progress: "Progress through the line",
    keep_open: "This page updates by itself. Keep it open: if you close it for long, you may lose your place.",
    paused: "The sale is paused by its organisers. You keep your place; nobody is being let in until it resumes.",
    closed_waiting: "The sale has stopped taking new places. You keep yours, and the line goes on.",
    closed: "This sale is closed: it takes no new places.",
    admitted_heading: "It is your turn",
    admitted: "You are in. Taking you to the sale in a few seconds, or go now:",
    admitted_no_origin: "You are in. The organisers have not said where to go next; show them this page.",
    continue_button: "Continue to the sale",
    leave_button: "Leave the line",
    ended_left: "You left the line.",
    ended_expired: "Your time to buy ran out. Your place went to the next person.",
    ended_abandoned: "We lost contact with this page for too long, so your place went to the next person.",
    ended_completed: "Your purchase is complete. Thank you.",
    ended_failed: "Your checkout did not go through, and your place went to the next person.",
    not_found: "We cannot find this place in line. It may have ended long ago.",
    error_heading: "Something went wrong",
    try_again: "Please try again in a moment.",
    refused_signature: "This sale only lets in people sent by its ticketing site. Go back to the ticketing site and follow its link again.",
    refused_puzzle: "Your browser's check did not go through. Please try again.",
    refused_blocked: "This account may not join this sale.",
    already_joined: "This account already has a place in this line. Use the page you joined from.",
    unavailable: "We could not take your place just now. Please try again in a moment.",
    puzzle_working: "Checking your browser, a few seconds…",
    puzzle_needs_script: "This sale asks your browser to solve a small check before joining, which needs JavaScript. Please turn it on.",
    checkout_title: "Checkout",
    checkout_intro: "You were let in from the waiting room. This is a demo shop: finish or give up, and the next person in line gets your place.",
    checkout_until: "Your time to buy ends at",
    complete_button: "Complete purchase",
    give_up_button: "Give up",
    checkout_completed: "Purchase complete. Thank you! Your place went back to the line.",
    checkout_failed: "You gave up. Your place went to the next person in line.",
    checkout_no_token: "This page is only for people let in by the waiting room.",
    checkout_refused: "Your admission is no longer valid: you left, or your time ran out.",
};

pub const FRENCH: Text = Text {
    lang: "fr",
    title: "Salle d’attente",
    join_heading: "Rejoindre la file",
    join_intro: "La demande est forte. Prenez une place dans la file : nous vous ferons entrer dès que ce sera votre tour. Gardez cette page ouverte.",
    join_button: "Rejoindre la file",
    join_again: "Rejoindre la file à nouveau",
    left: "Vous avez quitté la file. Votre place est allée à la personne suivante.",
    scheduled: "La vente n’a pas encore commencé. Rejoignez la file dès maintenant : à l’ouverture, toutes les personnes arrivées avant sont admises dans un ordre tiré au sort, avant les suivantes.",
    opens_at: "La vente ouvre le",
    waiting_heading: "Vous êtes dans la file",
    waiting_unnumbered: "Votre place est en cours de calcul. Cette page se met à jour toute seule.",
    position: "Votre position",
    people_ahead: "Personnes devant vous",
    estimated_wait: "Attente estimée",
    wait_unknown: "Pas encore connue",
    minutes: "min",
    under_a_minute: "Moins d’une minute",
    progress: "Avancée dans la file",
    keep_open: "Cette page se met à jour toute seule. Gardez-la ouverte : si vous la fermez longtemps, vous risquez de perdre votre place.",
    paused: "Les organisateurs ont mis la vente en pause. Vous gardez votre place ; personne n’entre avant la reprise.",
    closed_waiting: "La vente ne prend plus de nouvelles places. Vous gardez la vôtre et la file continue.",
    closed: "Cette vente est fermée : elle ne prend plus de nouvelles places.",
    admitted_heading: "C’est votre tour",
    admitted: "Vous pouvez entrer. Nous vous emmenons vers la vente dans quelques secondes, ou allez-y maintenant :",
    admitted_no_origin: "Vous pouvez entrer. Les organisateurs n’ont pas indiqué où aller ; montrez-leur cette page.",
    continue_button: "Continuer vers la vente",
    leave_button: "Quitter la file",
    ended_left: "Vous avez quitté la file.",
    ended_expired: "Votre temps d’achat est écoulé. Votre place est allée à la personne suivante.",
    ended_abandoned: "Cette page est restée trop longtemps sans nouvelles : votre place est allée à la personne suivante.",
    ended_completed: "Votre achat est terminé. Merci.",
    ended_failed: "Votre achat n’a pas abouti et votre place est allée à la personne suivante.",
    not_found: "Cette place dans la file est introuvable. Elle a peut-être pris fin il y a longtemps.",
    error_heading: "Un problème est survenu",
    try_again: "Veuillez réessayer dans un instant.",
    refused_signature: "Cette vente n’accepte que les personnes envoyées par sa billetterie. Retournez sur la billetterie et suivez à nouveau son lien.",
    refused_puzzle: "La vérification de votre navigateur n’a pas abouti. Veuillez réessayer.",
    refused_blocked: "Ce compte ne peut pas rejoindre cette vente.",
    already_joined: "Ce compte a déjà une place dans cette file. Utilisez la page depuis laquelle vous l’avez rejointe.",
    unavailable: "Nous n’avons pas pu prendre votre place. Veuillez réessayer dans un instant.",
    puzzle_working: "Vérification de votre navigateur, quelques secondes…",
    puzzle_needs_script: "Cette vente demande à votre navigateur une petite vérification avant de rejoindre la file, ce qui nécessite JavaScript. Veuillez l’activer.",
    checkout_title: "Paiement",
    checkout_intro: "Vous venez de la salle d’attente. Ceci est une boutique de démonstration : terminez ou abandonnez, et la personne suivante prend votre place.",
    checkout_until: "Votre temps d’achat se termine à",
    complete_button: "Terminer l’achat",
    give_up_button: "Abandonner",
    checkout_completed: "Achat terminé. Merci ! Votre place est revenue à la file.",
    checkout_failed: "Vous avez abandonné. Votre place est allée à la personne suivante.",
    checkout_no_token: "Cette page est réservée aux personnes admises par la salle d’attente.",
    checkout_refused: "Votre admission n’est plus valable : vous êtes parti, ou votre temps est écoulé.",
};

/// The languages shipped, in order of preference when nothing matches.
pub const LANGUAGES: [&Text; 2] = [&ENGLISH, &FRENCH];

/// The best shipped language for an `Accept-Language` header: the
/// highest-weighted range whose primary tag we have; English otherwise.
pub fn for_accept_language(header: Option<&str>) -> &'static Text {
    let Some(header) = header else {
        return &ENGLISH;
    };
    let mut best: Option<(u32, &'static Text)> = None;
    for range in header.split(',').take(20) {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1000), |q| {
                q.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .map(|q| (q * 1000.0) as u32)
            });
        let Some(weight) = weight.filter(|w| *w > 0) else {
            continue;
        };
        let primary = tag.split('-').next().unwrap_or("");
        let Some(text) = LANGUAGES.into_iter().find(|t| t.lang == primary) else {
            continue;
        };
        if best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, text));
        }
    }
    best.map_or(&ENGLISH, |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_accept_language() {
        assert_eq!(for_accept_language(None).lang, "en");
        assert_eq!(
            for_accept_language(Some("fr-FR,fr;q=0.9,en;q=0.8")).lang,
            "fr"
        );
        assert_eq!(
            for_accept_language(Some("de-DE,en;q=0.5,fr;q=0.7")).lang,
            "fr"
        );
        assert_eq!(for_accept_language(Some("en-GB, fr;q=0.2")).lang, "en");
        assert_eq!(for_accept_language(Some("fr;q=0, de")).lang, "en");
        assert_eq!(for_accept_language(Some("garbage;;;q=x")).lang, "en");
    }

    #[test]
    fn every_language_says_everything() {
        // Debug lists every field: none may be left empty.
        for text in LANGUAGES {
            assert!(!format!("{text:?}").contains(": \"\""), "{}", text.lang);
        }
    }
}
