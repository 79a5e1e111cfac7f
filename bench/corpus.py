"""A deterministic synthetic news corpus for the benchmark.

Articles are Markdown files with YAML front-matter, about 70 % German and
30 % English, generated from sentence templates and vocabulary lists with a
seeded RNG. Each article follows one "case" (a company, a person, an
authority, an allegation) and fills its sentences with varying entities,
numbers and dates, so that BM25 and dense retrieval see a realistic spread of
rare and common terms. Article ``i`` depends only on ``(seed, i)``: adding
article ``n`` later does not change articles ``0 .. n-1``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# --- vocabulary ---------------------------------------------------------------

_PREFIXES = (
    "Alpen Nord Helvet Rhein Vektor Lumen Kessler Brandt Orion Zephyr Solaris Atlas Falken Greif "
    "Kristall Aare Jura Limmat Boreal Quanta Meridian Polaris Trion Castell Valora Sentis Pilatus "
    "Tessin Fjord Nimbus Arcadia Cobalt Ferrum Argon Lyra Sirius Vega Kappa Delta Horizon"
).split()
_STEMS = "tel data com net tronic soft link wave logic sys pay med cargo grid cloud secure".split()
_FORMS = ("AG", "GmbH", "SA", "Holding", "Group", "Ltd")
_FIRST = (
    "Ilja Anna Markus Sabine Thomas Julia Stefan Claudia Andreas Petra Lukas Miriam Daniel Nina "
    "Reto Corinne Beat Ursula Jonas Elena Viktor Olga Dmitri Sarah James Emily Robert Laura "
    "Michael Fatima Ahmet Sofia Pietro Chiara Henrik Ingrid Pavel Marta Tobias Leonie"
).split()
_LAST = (
    "Gorelik Keller Meier Brunner Huber Schneider Fischer Weber Baumann Frei Gerber Steiner "
    "Moser Wyss Zimmermann Hofmann Novak Petrov Ivanova Sokolov Smith Carter Walsh Bennett "
    "Rossi Bianchi Lindqvist Nyberg Kowalski Horvat Demir Yilmaz Laurent Dubois Marchetti Berger"
).split()
_CITIES = (
    "Zug Zürich Basel Bern Genf Lugano Luzern St. Gallen Winterthur Berlin München Hamburg Wien "
    "Frankfurt Köln Stuttgart London Dublin Luxemburg Tallinn Warschau Prag Amsterdam Mailand"
).replace("St. Gallen", "St.Gallen").split()
_COUNTRIES_DE = "Russland Iran Afghanistan Zypern Malta Estland Serbien Kasachstan Singapur Panama Dubai Georgien".split()
_COUNTRIES_EN = "Russia Iran Afghanistan Cyprus Malta Estonia Serbia Kazakhstan Singapore Panama Dubai Georgia".split()
_AGENCIES_DE = (
    "die Eidgenössische Finanzmarktaufsicht Finma", "der Eidgenössische Datenschutzbeauftragte EDÖB",
    "das Bundeskartellamt", "die Bundesanwaltschaft", "die Wettbewerbskommission Weko",
    "die Finanzaufsicht BaFin", "die Europäische Kommission", "die Staatsanwaltschaft {city}",
    "das Bundesamt für Cybersicherheit", "die Österreichische Datenschutzbehörde",
)
_AGENCIES_EN = (
    "the Swiss financial regulator Finma", "the Federal Trade Commission", "the European Commission",
    "the UK Information Commissioner's Office", "the US Securities and Exchange Commission",
    "the Irish Data Protection Commission", "the prosecutor's office in {city}",
    "the German cartel office", "the Financial Conduct Authority", "the Department of Justice",
)
_TOPICS_DE = (
    ("Überwachung von Mobiltelefonen", "heimlich Standortdaten von Mobilfunkkunden weitergegeben"),
    ("Geldwäsche", "über Briefkastenfirmen Gelder in Millionenhöhe verschoben"),
    ("Datenleck", "die Kundendaten von Hunderttausenden Nutzern ungeschützt gespeichert"),
    ("Kartellabsprachen", "Preise mit Konkurrenten abgesprochen"),
    ("Bilanzfälschung", "Umsätze in den Geschäftsberichten künstlich aufgebläht"),
    ("Cyberangriff", "einen Angriff auf ihre Server wochenlang verschwiegen"),
    ("Steuerhinterziehung", "Gewinne systematisch in Steueroasen verlagert"),
    ("Bestechung", "Amtsträgern für Aufträge Schmiergelder gezahlt"),
    ("Sanktionsverstößen", "trotz Sanktionen Technik an gelistete Firmen geliefert"),
    ("Spionagesoftware", "Spähsoftware an autoritäre Regierungen verkauft"),
)
_TOPICS_EN = (
    ("phone surveillance", "secretly handed over location data of mobile subscribers"),
    ("money laundering", "moved millions through shell companies"),
    ("a data breach", "stored the data of hundreds of thousands of users without protection"),
    ("price fixing", "fixed prices with competitors"),
    ("accounting fraud", "artificially inflated revenue in its annual reports"),
    ("a cyber attack", "concealed an attack on its servers for weeks"),
    ("tax evasion", "systematically shifted profits to tax havens"),
    ("bribery", "paid officials kickbacks for contracts"),
    ("sanctions violations", "supplied technology to blacklisted firms despite sanctions"),
    ("spyware sales", "sold spyware to authoritarian governments"),
)
_ROLES_DE = ("Mitgründer", "Chef", "Finanzchef", "Verwaltungsratspräsident", "technischer Leiter",
             "frühere Geschäftsführer", "Hauptaktionär", "Compliance-Verantwortliche")
_ROLES_EN = ("co-founder", "chief executive", "chief financial officer", "chairman",
             "chief technology officer", "former managing director", "main shareholder", "head of compliance")
_CUSTOMERS = ("Twitter", "Google", "Microsoft", "Facebook", "Amazon", "Swisscom", "Deutsche Telekom",
              "Vodafone", "Salt", "Sunrise", "Telefónica", "Orange", "WhatsApp", "LinkedIn", "Uber")
_OUTLETS_DE = (("Netzwoche", "netzwoche.ch"), ("heise online", "heise.de"), ("Tages-Anzeiger", "tagesanzeiger.ch"),
               ("NZZ", "nzz.ch"), ("Der Spiegel", "spiegel.de"), ("Süddeutsche Zeitung", "sueddeutsche.de"),
               ("Handelszeitung", "handelszeitung.ch"), ("Republik", "republik.ch"),
               ("Der Standard", "derstandard.at"), ("Golem", "golem.de"))
_OUTLETS_EN = (("Reuters", "reuters.com"), ("Bloomberg", "bloomberg.com"), ("The Guardian", "theguardian.com"),
               ("Financial Times", "ft.com"), ("TechCrunch", "techcrunch.com"), ("The Register", "theregister.com"),
               ("Ars Technica", "arstechnica.com"), ("BBC News", "bbc.co.uk"))
_MONTHS_DE = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
              "Oktober", "November", "Dezember")
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")

# --- sentence templates -----------------------------------------------------------

_LEAD_DE = (
    "{company} steht wegen {topic} in der Kritik.",
    "Gegen {company} wird wegen {topic} ermittelt.",
    "{agency_cap} hat ein Verfahren gegen {company} eröffnet.",
)
_SENT_DE = (
    "Dem Unternehmen mit Sitz in {city} wird vorgeworfen, {allegation} zu haben.",
    "Die Vorwürfe richten sich vor allem gegen den {role} {person}.",
    "{person} soll nach Recherchen von {outlet2} bereits im {month} {year} von den Vorgängen gewusst haben.",
    "Ein Sprecher von {company} wies die Vorwürfe am {date} entschieden zurück.",
    "Laut {outlet2} geht es um einen Schaden von rund {amount}.",
    "{agency_cap} bestätigte, dass sie seit dem {date} Unterlagen des Unternehmens prüft.",
    "Zu den Kunden von {company} zählen unter anderem {customer} und {customer2}.",
    "{customer} kündigte an, die Zusammenarbeit mit {company} bis Ende {year} zu beenden.",
    "Das Unternehmen beschäftigt nach eigenen Angaben {n} Mitarbeitende in {city} und {city2}.",
    "Der Umsatz von {company} stieg im Jahr {year} um {pct} Prozent auf {amount}.",
    "Die Aktie brach nach Bekanntwerden der Vorwürfe um {pct} Prozent ein.",
    "Eine interne Untersuchung soll klären, ob Systeme des Unternehmens kompromittiert wurden.",
    "Mehrere Geschäftspartner in {country} sollen an den Vorgängen beteiligt gewesen sein.",
    "Der Sicherheitsexperte {person2} sagte, der Fall zeige, wie verwundbar die Branche sei.",
    "Nach Angaben von {outlet2} wurden insgesamt {n} Verträge mit Firmen in {country} geschlossen.",
    "{person} ist seit dem {date} nicht mehr für {company} tätig.",
    "Die Anwälte von {person} erklärten, ihr Mandant habe sich nichts vorzuwerfen.",
    "Im Verwaltungsrat von {company} kam es daraufhin zu einem Rücktritt.",
    "{agency_cap} könnte eine Busse von bis zu {amount} verhängen.",
    "Bereits im {month} {year} hatten Journalisten erste Hinweise auf Unregelmäßigkeiten veröffentlicht.",
    "Politikerinnen und Politiker in {city} fordern nun strengere Regeln für die Branche.",
    "Der Nationalrat will das Thema in der Sommersession behandeln.",
    "Ein ehemaliger Mitarbeiter berichtete, dass interne Warnungen jahrelang ignoriert worden seien.",
    "Die Firma habe über {n} Server in {country} betrieben, heißt es in den Dokumenten.",
    "{company} kündigte an, eine unabhängige Prüfgesellschaft zu beauftragen.",
    "Für das laufende Geschäftsjahr rechnet das Unternehmen mit einem Verlust von {amount}.",
    "Wie {outlet2} berichtet, wurden am {date} Büros in {city} durchsucht.",
    "Dabei stellten die Ermittler {n} Datenträger und zahlreiche Dokumente sicher.",
    "Nach Schätzungen von Fachleuten sind weltweit rund {pct} Millionen Menschen betroffen.",
    "{person2} von der Universität {city} hält die Vorwürfe für glaubwürdig.",
    "Eine Stellungnahme von {customer} lag bis Redaktionsschluss nicht vor.",
    "Das Verfahren dürfte sich nach Einschätzung von Juristen über mehrere Jahre hinziehen.",
)
_LEAD_EN = (
    "{company} is under fire over {topic}.",
    "Authorities have opened an investigation into {company} over {topic}.",
    "{agency_cap} has launched proceedings against {company}.",
)
_SENT_EN = (
    "The company, which is based in {city}, is accused of having {allegation}.",
    "The allegations are aimed mainly at its {role}, {person}.",
    "According to {outlet2}, {person} knew about the practices as early as {month} {year}.",
    "A spokesperson for {company} firmly rejected the allegations on {date}.",
    "{outlet2} reported that the damage amounts to roughly {amount}.",
    "{agency_cap} confirmed that it has been reviewing company documents since {date}.",
    "Customers of {company} include {customer} and {customer2}, among others.",
    "{customer} said it would end its relationship with {company} by the end of {year}.",
    "The company says it employs {n} people in {city} and {city2}.",
    "Revenue at {company} rose {pct} percent to {amount} in {year}.",
    "Its shares fell {pct} percent after the allegations became public.",
    "An internal investigation is meant to establish whether the company's systems were compromised.",
    "Several business partners in {country} are said to have been involved.",
    "Security researcher {person2} said the case showed how vulnerable the industry is.",
    "According to {outlet2}, a total of {n} contracts were signed with firms in {country}.",
    "{person} has no longer worked for {company} since {date}.",
    "Lawyers for {person} said their client had done nothing wrong.",
    "One member of the board of {company} resigned shortly afterwards.",
    "{agency_cap} could impose a fine of up to {amount}.",
    "Journalists had first published evidence of irregularities in {month} {year}.",
    "Lawmakers in {city} are now calling for stricter rules for the industry.",
    "A former employee said internal warnings had been ignored for years.",
    "The documents show that the firm operated more than {n} servers in {country}.",
    "{company} said it would hire an independent auditing firm.",
    "For the current financial year the company expects a loss of {amount}.",
    "As {outlet2} reports, offices in {city} were searched on {date}.",
    "Investigators seized {n} storage devices and numerous documents.",
    "Experts estimate that around {pct} million people are affected worldwide.",
    "{person2} of the University of {city} considers the allegations credible.",
    "{customer} had not responded to a request for comment by the time of publication.",
    "Legal experts expect the proceedings to drag on for several years.",
)
_TITLE_DE = ("{company}: Vorwürfe wegen {topic}", "Ermittlungen gegen {company} wegen {topic}",
             "{customer} trennt sich von {company}", "{person} unter Druck: {company} und die {topic_short}")
_TITLE_EN = ("{company} faces scrutiny over {topic}", "Regulators probe {company} over {topic}",
             "{customer} cuts ties with {company}", "{person} under pressure as {company} faces {topic}")
_FURNITURE_DE = ("Lesezeit: {n} Min.", "(Bild: Keystone)", "Teilen", "In Pocket speichern vorlesen Druckansicht")
_FURNITURE_EN = ("{n} min read", "(Photo: Reuters)", "Share", "Advertisement")


@dataclass(frozen=True)
class GeneratedArticle:
    """One generated article and the entities it is about (for questions)."""

    path: Path
    language: str
    title: str
    company: str
    person: str
    city: str
    customer: str
    chars: int


def _company(rng: random.Random) -> str:
    return f"{rng.choice(_PREFIXES)}{rng.choice(_STEMS)} {rng.choice(_FORMS)}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _amount(rng: random.Random, language: str) -> str:
    value = rng.uniform(1.1, 950.0)
    currency = rng.choice(("Franken", "Euro", "Dollar") if language == "de" else ("francs", "euros", "dollars"))
    if language == "de":
        unit = rng.choice(("Millionen", "Milliarden")) if value < 20 else "Millionen"
        return f"{value:.1f}".replace(".", ",") + f" {unit} {currency}"
    unit = rng.choice(("million", "billion")) if value < 20 else "million"
    return f"{value:.1f} {unit} {currency}"


def _date(rng: random.Random, language: str) -> tuple[str, dt.date]:
    day = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(5 * 365))
    if language == "de":
        return f"{day.day}. {_MONTHS_DE[day.month - 1]} {day.year}", day
    return f"{_MONTHS_EN[day.month - 1]} {day.day}, {day.year}", day


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60]


class _Filler:
    """Fills template slots: fixed case entities plus fresh random extras."""

    def __init__(self, rng: random.Random, language: str, case: dict[str, str]) -> None:
        self.rng = rng
        self.language = language
        self.case = case

    def __call__(self, template: str) -> str:
        rng, de = self.rng, self.language == "de"
        values = dict(self.case)
        values.update(
            person2=_person(rng),
            city2=rng.choice(_CITIES),
            customer2=rng.choice(_CUSTOMERS),
            country=rng.choice(_COUNTRIES_DE if de else _COUNTRIES_EN),
            outlet2=rng.choice(_OUTLETS_DE if de else _OUTLETS_EN)[0],
            amount=_amount(rng, self.language),
            date=_date(rng, self.language)[0],
            month=rng.choice(_MONTHS_DE if de else _MONTHS_EN),
            year=str(rng.randrange(2015, 2025)),
            n=str(rng.choice((rng.randrange(2, 40), rng.randrange(40, 900), rng.randrange(1000, 90000)))),
            pct=str(rng.randrange(2, 60)),
        )
        return template.format(**values)


def generate_article(seed: int, i: int, directory: Path, target_chars: int = 3300) -> GeneratedArticle:
    """Write article ``i`` of the corpus ``seed`` into ``directory``."""
    rng = random.Random(seed * 1_000_003 + i)
    language = "de" if rng.random() < 0.7 else "en"
    de = language == "de"
    # A case is shared by a few articles: the company comes from a smaller pool.
    case_rng = random.Random(seed * 7919 + i // 3)
    topic, allegation = case_rng.choice(_TOPICS_DE if de else _TOPICS_EN)
    city = case_rng.choice(_CITIES)
    agency = case_rng.choice(_AGENCIES_DE if de else _AGENCIES_EN).format(city=city)
    case = {
        "company": _company(case_rng),
        "person": _person(case_rng),
        "role": case_rng.choice(_ROLES_DE if de else _ROLES_EN),
        "city": city,
        "customer": case_rng.choice(_CUSTOMERS),
        "topic": topic,
        "topic_short": topic.split()[0],
        "allegation": allegation,
        "agency": agency,
        "agency_cap": agency[0].upper() + agency[1:],
    }
    fill = _Filler(rng, language, case)
    title = fill(rng.choice(_TITLE_DE if de else _TITLE_EN))
    sentences = list(_SENT_DE if de else _SENT_EN)
    rng.shuffle(sentences)
    target = target_chars + rng.randrange(-300, 300)
    paragraphs: list[str] = [fill(rng.choice(_LEAD_DE if de else _LEAD_EN))
                             + " " + fill(sentences[0])]
    size = len(paragraphs[0])
    k = 1
    while size < target:
        group = []
        for _ in range(rng.randrange(2, 5)):
            if k >= len(sentences):  # template pool used up: reshuffle, new fillers
                rng.shuffle(sentences)
                k = 0
            group.append(fill(sentences[k]))
            k += 1
        paragraph = " ".join(group)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    furniture = [f.format(n=rng.randrange(2, 9)) for f in rng.sample(_FURNITURE_DE if de else _FURNITURE_EN, 2)]
    outlet, domain = rng.choice(_OUTLETS_DE if de else _OUTLETS_EN)
    _, day = _date(rng, language)
    url = f"https://www.{domain}/{day.year}/{day.month:02d}/{_slug(title)}-{i:05d}"
    author = _person(rng)
    front = "\n".join([
        "---",
        f'title: "{title}"',
        f'outlet: "{outlet}"',
        f'url: "{url}"',
        f'published: "{day.isoformat()}"',
        f'authors: ["{author}"]',
        f'language: "{language}"',
        "---",
    ])
    body = "\n\n".join([title, *furniture, *paragraphs])
    path = directory / f"{i:05d}-{_slug(title)}.md"
    path.write_text(f"{front}\n{body}\n", encoding="utf-8")
    return GeneratedArticle(path, language, title, case["company"], case["person"], city,
                            case["customer"], size)


def generate_corpus(directory: Path, n: int, seed: int = 42) -> list[GeneratedArticle]:
    """Write ``n`` articles into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [generate_article(seed, i, directory) for i in range(n)]


_QUESTIONS_DE = (
    "Was wird {company} vorgeworfen?",
    "Wer ist {person}?",
    "Welche Behörde ermittelt gegen {company}?",
    "Wo hat {company} ihren Sitz?",
    "Wie hoch könnte die Busse gegen {company} ausfallen?",
    "Warum beendet {customer} die Zusammenarbeit mit {company}?",
    "Seit wann arbeitet {person} nicht mehr für {company}?",
    "Wie viele Mitarbeitende hat {company}?",
)
_QUESTIONS_EN = (
    "What is {company} accused of?",
    "Who is {person}?",
    "Which authority is investigating {company}?",
    "Where is {company} based?",
    "How large a fine could {company} face?",
    "Why is {customer} cutting ties with {company}?",
    "Since when has {person} no longer worked for {company}?",
    "How many people does {company} employ?",
)
_OFF_TOPIC = (
    "Wie wird das Wetter morgen in Zürich?",
    "Schreib mir ein Gedicht über Katzen.",
    "What is the capital of Australia?",
    "Tell me a joke about programmers.",
    "Wer hat die Fußball-WM 2014 gewonnen?",
)


def corpus_questions(articles: list[GeneratedArticle], n: int, seed: int = 7) -> list[str]:
    """``n`` distinct questions about entities of the corpus, about 1 in 12 off-topic."""
    rng = random.Random(seed)
    questions: list[str] = []
    seen: set[str] = set()
    off_topic = list(_OFF_TOPIC)
    while len(questions) < n:
        if off_topic and rng.random() < 1 / 12:
            question = off_topic.pop()
        else:
            a = rng.choice(articles)
            template = rng.choice(_QUESTIONS_DE if a.language == "de" else _QUESTIONS_EN)
            question = template.format(company=a.company, person=a.person, customer=a.customer)
        if question not in seen:
            seen.add(question)
            questions.append(question)
    return questions
