"""Generate the bundled loan-amount data: `data/df_old.csv` (reference), `data/df_new.csv`
(current) and `data/stream/batch_NN.csv` (what comes after), byte for byte from seeds.

The current data has drifted part of the way, as customer data does: the population is
younger and more spread, with more women, fewer sport licences and more smokers, fewer in
Île-de-France, a lower loan level, and partly changed feature-target relationships (a
forest of the old rows keeps R² ≈ 0.7 on the new ones; data/README.md). The stream continues it
in time: the customers keep moving the same way batch after batch, and the bank reprices
its loans twice along the way. `python -m mlcycle.ingest.datagen` (or `make data`) rewrites all."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

NOMS = [
    "Martin",
    "Bernard",
    "Thomas",
    "Petit",
    "Robert",
    "Richard",
    "Durand",
    "Dubois",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefebvre",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Muller",
    "Lefevre",
    "Faure",
    "Andre",
    "Mercier",
    "Blanc",
]
PRENOMS_H = [
    "Jean",
    "Pierre",
    "Louis",
    "Paul",
    "Hugo",
    "Lucas",
    "Nathan",
    "Julien",
    "Nicolas",
    "Antoine",
    "Thomas",
    "Mathieu",
    "Karim",
    "Yanis",
    "Olivier",
]
PRENOMS_F = [
    "Marie",
    "Camille",
    "Léa",
    "Chloé",
    "Manon",
    "Julie",
    "Sarah",
    "Inès",
    "Emma",
    "Claire",
    "Sophie",
    "Amina",
    "Laura",
    "Nathalie",
    "Lucie",
]
NIVEAUX = ["aucun", "bac", "bac+2", "master", "doctorat"]
REGIONS = [
    "Île-de-France",
    "Auvergne-Rhône-Alpes",
    "Occitanie",
    "Nouvelle-Aquitaine",
    "Hauts-de-France",
    "Provence-Alpes-Côte d'Azur",
    "Bretagne",
    "Grand Est",
]


@dataclass(frozen=True)
class Population:
    """How one batch of customers is drawn and how the bank priced their loans."""

    age_mean: float
    age_sd: float
    share_men: float
    share_sport: float
    share_smoker: float
    region_weights: tuple[float, ...]
    niveau_weights: tuple[float, ...]
    # Loan = intercept + income_coef * income + niveau bonus + age_coef * (age - 40)
    #        + smoker_effect + sport_effect + idf_bonus + noise
    intercept: float
    income_coef: float
    age_coef: float
    smoker_effect: float
    sport_effect: float
    idf_bonus: float
    niveau_bonus: tuple[float, ...]
    noise_sd: float
    # Every income is scaled by this (wage growth along the stream); 1 for the two files.
    income_level: float = 1.0


OLD = Population(
    age_mean=46,
    age_sd=10,
    share_men=0.62,
    share_sport=0.48,
    share_smoker=0.18,
    region_weights=(0.34, 0.15, 0.10, 0.10, 0.10, 0.09, 0.06, 0.06),
    niveau_weights=(0.10, 0.30, 0.30, 0.22, 0.08),
    intercept=1500,
    income_coef=5.0,
    age_coef=-90,
    smoker_effect=-2500,
    sport_effect=1200,
    idf_bonus=2500,
    niveau_bonus=(0, 500, 1500, 3500, 5000),
    noise_sd=1200,
)
NEW = Population(
    age_mean=35,
    age_sd=14,
    share_men=0.54,
    share_sport=0.39,
    share_smoker=0.26,
    region_weights=(0.24, 0.14, 0.11, 0.11, 0.11, 0.11, 0.09, 0.09),
    niveau_weights=(0.09, 0.28, 0.30, 0.24, 0.09),
    intercept=750,
    income_coef=4.65,
    age_coef=-30,
    smoker_effect=-4000,
    sport_effect=900,
    idf_bonus=3250,
    niveau_bonus=(0, 400, 1250, 2750, 3750),
    noise_sd=1200,
)


def generate(pop: Population, n: int, seed: int, unbooked: float = 0.01) -> pd.DataFrame:
    """Draw n customers of a population; the same seed gives the same frame. A share
    `unbooked` of the loans is left missing (0 for labelled batches)."""
    rng = np.random.default_rng(seed)
    sexe = np.where(rng.random(n) < pop.share_men, "H", "F")
    men = sexe == "H"
    age = np.clip(rng.normal(pop.age_mean, pop.age_sd, n), 18, 80).round().astype(int)
    taille = np.where(men, rng.normal(176, 7, n), rng.normal(163, 6, n)).round().astype(int)
    poids = ((taille - 100) * 0.9 + rng.normal(0, 8, n)).round(1)
    niveau_idx = rng.choice(len(NIVEAUX), n, p=pop.niveau_weights)
    region = np.array(REGIONS)[rng.choice(len(REGIONS), n, p=pop.region_weights)]
    sport = rng.random(n) < pop.share_sport
    smoker = rng.random(n) < pop.share_smoker
    french = rng.random(n) < 0.86
    base_income = np.array([1500, 1900, 2300, 3100, 3700])[niveau_idx] * pop.income_level
    revenu = base_income * (1 + 0.012 * (age - 40)).clip(0.6) * rng.lognormal(0, 0.22, n)
    revenu = revenu.round()
    montant = (
        pop.intercept
        + pop.income_coef * revenu
        + np.array(pop.niveau_bonus)[niveau_idx]
        + pop.age_coef * (age - 40)
        + pop.smoker_effect * smoker
        + pop.sport_effect * sport
        + pop.idf_bonus * (region == "Île-de-France")
        + rng.normal(0, pop.noise_sd, n)
    )
    montant = np.clip(montant, 500, 40000).round()
    prenom = np.where(men, rng.choice(PRENOMS_H, n), rng.choice(PRENOMS_F, n))
    frame = pd.DataFrame(
        {
            "nom": rng.choice(NOMS, n),
            "prenom": prenom,
            "age": age,
            "taille": taille,
            "poids": poids,
            "sexe": sexe,
            "sport_licence": np.where(sport, "oui", "non"),
            "niveau_etude": np.array(NIVEAUX)[niveau_idx],
            "region": region,
            "smoker": np.where(smoker, "oui", "non"),
            "nationalité_francaise": np.where(french, "oui", "non"),
            "revenu_estime_mois": revenu,
            "montant_pret": montant,
        }
    )
    # Real exports have holes: an unknown income here and there, a few loans not booked.
    frame.loc[rng.random(n) < 0.02, "revenu_estime_mois"] = np.nan
    frame.loc[rng.random(n) < unbooked, "montant_pret"] = np.nan
    return frame


# The stream: where the customers are heading by its last batch. Each batch k of n sits k/n
# of the way from NEW to here: younger still, more women and smokers, fewer sport licences,
# the south and west growing at the expense of Île-de-France, more degrees, wages +25 %.
HORIZON = replace(
    NEW,
    age_mean=26,
    share_men=0.38,
    share_sport=0.20,
    share_smoker=0.42,
    region_weights=(0.06, 0.12, 0.20, 0.16, 0.08, 0.20, 0.10, 0.08),
    niveau_weights=(0.05, 0.20, 0.30, 0.30, 0.15),
    income_level=1.25,
)
# Who the bank lends to moves smoothly; how it prices a loan changes at a date. From the
# batch named here on, these fields of the relationship replace NEW's (cumulatively).
REPRICINGS = {
    # Rates rise: every loan shrinks, income buys less of it, older customers get less.
    3: {"intercept": -750, "income_coef": 3.9, "age_coef": -60},
    # A new insurance contract: smoking no longer cuts the loan, degrees and sport count
    # again, Île-de-France earns no bonus.
    5: {
        "smoker_effect": 0,
        "niveau_bonus": (0, 800, 2500, 4500, 6000),
        "sport_effect": 1500,
        "idf_bonus": 0,
    },
}
# The fields of a Population that say how the bank prices a loan; the others (COVARIATES
# and income_level) say who borrows.
PRICING = (
    "intercept",
    "income_coef",
    "age_coef",
    "smoker_effect",
    "sport_effect",
    "idf_bonus",
    "niveau_bonus",
    "noise_sd",
)
COVARIATES = (
    "age_mean",
    "age_sd",
    "share_men",
    "share_sport",
    "share_smoker",
    "region_weights",
    "niveau_weights",
    "income_level",
)
# Rows per batch (one period of loans, not every period alike); batch k is drawn with
# seed STREAM_SEED + k, after df_new's 2025.
STREAM_ROWS = (520, 610, 480, 700, 560, 640)
STREAM_SEED = 2025
STREAM_DIR = "stream"


def _between(start, end, t: float):
    """A number or a tuple of weights, a fraction t of the way from start to end."""
    if isinstance(start, tuple):
        return tuple(a + t * (b - a) for a, b in zip(start, end, strict=True))
    return start + t * (end - start)


def stream_population(batch: int, batches: int = len(STREAM_ROWS)) -> Population:
    """The customers of batch `batch` (1-based) of the stream: covariates interpolated from
    NEW to HORIZON, pricing as last repriced at or before that batch."""
    if not 1 <= batch <= batches:
        raise ValueError(f"batch must be between 1 and {batches}, got {batch}")
    t = batch / batches
    moved = {name: _between(getattr(NEW, name), getattr(HORIZON, name), t) for name in COVARIATES}
    for start in sorted(REPRICINGS):
        if start <= batch:
            moved.update(REPRICINGS[start])
    return replace(NEW, **moved)


def stream_batches() -> dict[str, tuple[Population, int, int]]:
    """File name -> (population, seed, rows) of every batch of the stream."""
    return {
        f"batch_{k:02d}.csv": (stream_population(k), STREAM_SEED + k, rows)
        for k, rows in enumerate(STREAM_ROWS, start=1)
    }


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write with a fixed format so regeneration is byte-identical."""
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")


# File name -> (population, seed): what `make data` writes.
BUNDLED = {"df_old.csv": (OLD, 2024), "df_new.csv": (NEW, 2025)}


def write_bundled(out: Path, rows: int = 2000) -> None:
    """The two files, then the stream in out/stream/ (labelled: no loan left unbooked)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, (population, seed) in BUNDLED.items():
        write_csv(generate(population, rows, seed), out / name)
    stream, batches = out / STREAM_DIR, stream_batches()
    stream.mkdir(exist_ok=True)
    # A batch the design no longer has would be replayed as if it still belonged.
    for stale in stream.glob("batch_*.csv"):
        if stale.name not in batches:
            stale.unlink()
    for name, (population, seed, batch_rows) in batches.items():
        write_csv(generate(population, batch_rows, seed, unbooked=0.0), stream / name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "data")
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args(argv)
    write_bundled(args.out, args.rows)


if __name__ == "__main__":
    main()
