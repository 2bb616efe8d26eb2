"""Generate the bundled loan-amount data: `data/df_old.csv` (reference) and `data/df_new.csv`
(current), byte for byte from a seed. The current data has drifted the way customer data
does: the population is younger and more spread, with more women, fewer sport licences and
more smokers, an even region mix, a lower loan level, and partly changed feature-target
relationships. `python -m mlcycle.datagen` (or `make data`) rewrites both files."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
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
    share_men=0.45,
    share_sport=0.30,
    share_smoker=0.34,
    region_weights=(0.125,) * 8,
    niveau_weights=(0.08, 0.27, 0.30, 0.25, 0.10),
    intercept=0,
    income_coef=4.3,
    age_coef=30,
    smoker_effect=-4000,
    sport_effect=600,
    idf_bonus=4000,
    niveau_bonus=(0, 300, 1000, 2000, 2500),
    noise_sd=1200,
)


def generate(pop: Population, n: int, seed: int) -> pd.DataFrame:
    """Draw n customers of a population; the same seed gives the same frame."""
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
    base_income = np.array([1500, 1900, 2300, 3100, 3700])[niveau_idx]
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
    frame.loc[rng.random(n) < 0.01, "montant_pret"] = np.nan
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write with a fixed format so regeneration is byte-identical."""
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")


# File name -> (population, seed): what `make data` writes.
BUNDLED = {"df_old.csv": (OLD, 2024), "df_new.csv": (NEW, 2025)}


def write_bundled(out: Path, rows: int = 2000) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (population, seed) in BUNDLED.items():
        write_csv(generate(population, rows, seed), out / name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args(argv)
    write_bundled(args.out, args.rows)


if __name__ == "__main__":
    main()
