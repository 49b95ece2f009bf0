#!/usr/bin/env python3
"""Writes the input files of the golden ingest cases (tests/data/golden/*/input.*).

The inputs are small hand-made files: fictitious people, no real records. Run once after
editing; the outputs are committed. Needs openpyxl and pyarrow (pip install openpyxl pyarrow).
"""
import json
import os
from pathlib import Path

HERE = Path(__file__).parent / "golden"


def case(name, input_name, content=None, *, org="ngo-test", mission="KGZ", profile="canonical",
         accept_valid=False, encoding=None, extra=None):
    d = HERE / name
    d.mkdir(parents=True, exist_ok=True)
    toml = [f'input = "{input_name}"', f'org = "{org}"', f'mission = "{mission}"', f'profile = "{profile}"']
    if accept_valid:
        toml.append("accept_valid = true")
    if encoding:
        toml.append(f'encoding = "{encoding}"')
    (d / "case.toml").write_text("\n".join(toml) + "\n")
    if content is not None:
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(d / input_name, mode) as f:
            f.write(content)
    if extra:
        for fname, text in extra.items():
            (d / fname).write_text(text)
    return d


CYR_HEADER = "case_id;Фамилия;Имя;Дата рождения;registration_date;Пол;citizenship;country_of_exploitation;exploitation_types;shelter_offered;shelter_accepted;Телефон;notes\n"
CYR_ROWS = [
    "KG-001;Асанова;Айгуль;14.03.1987;2005-06-20;ж;KG;RU;forced_labour;да;нет;+996555000111;Звонила сестра\n",
    "KG-002;Иванов;Пётр;01.01.1990;2006-02-01;м;Казахстан;TR;sexual_exploitation;нет;;+77010000000;\n",
    "KG-003;Токтогулова;Жылдыз;02.09.1992;2006-11-05;ж;KGZ;ARE;\"forced_labour;sexual_exploitation\";да;да;;\n",
]
CYR = CYR_HEADER + "".join(CYR_ROWS)

# 1-2. Canonical CSV with Cyrillic, UTF-8 and Windows-1251.
case("canonical-csv-utf8", "input.csv", CYR)
case("canonical-csv-cp1251-detected", "input.csv", CYR.encode("cp1251"))
case("canonical-csv-cp1251-given", "input.csv", CYR.encode("cp1251"), encoding="windows-1251")

# 3. UTF-8 with BOM, comma delimiter, Latin spelling of the same person as KG-001.
case("canonical-csv-bom-latin", "input.csv",
     "\ufeffcase_id,last_name,first_name,birth_date,registration_date,gender,citizenship,trafficking_status,referral_source\n"
     "B-17,Asanova,Aigul,1987-03-14,2007-01,female,KGZ,actual,ngo\n"
     "B-18,,,,2007-02,male,UZB,possible,hotline\n")

# 4. JSON Lines.
jl = [
    {"case_id": "J-1", "full_name": "Нурланов Ерлан", "birth_date": "1985-05-05", "registration_date": "2004-03-15",
     "gender": "m", "citizenship": "KZ", "exploitation_types": ["forced_labour"], "labour_sectors": "construction;agriculture",
     "shelter_offered": True, "shelter_accepted": False, "case_status": "closed", "case_closed_date": "2004-09-01"},
    {"case_id": "J-2", "document_number": "AN 1234567", "registration_date": "2004-04-01", "gender": "female",
     "age": 16, "citizenship": "UZ", "exploitation_types": "sexual_exploitation", "participated_in_trial": 1},
]
case("canonical-jsonl", "input.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in jl))

# 5. Excel.
from openpyxl import Workbook  # noqa: E402

wb = Workbook()
ws = wb.active
ws.title = "Cases"
ws.append(["case_id", "Фамилия", "Имя", "Дата рождения", "registration_date", "Пол", "citizenship", "assisted_return", "return_type"])
import datetime  # noqa: E402
ws.append(["X-1", "Садыкова", "Гульнара", datetime.date(1995, 7, 1), datetime.date(2008, 5, 12), "ж", "TJ", 1, "to_country_of_origin"])
ws.append([2, "Рахимов", "Бахтиёр", "12.12.1980", "2008-06", "м", "TJK", 0, None])
other = wb.create_sheet("Notes")
other.append(["not", "read"])
d = case("canonical-xlsx", "input.xlsx")
wb.save(d / "input.xlsx")

# 6. Parquet.
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

table = pa.table({
    "case_id": ["P-1", "P-2"],
    "first_name": ["Olena", "Ion"],
    "last_name": ["Kovalenko", "Rusu"],
    "birth_date": [datetime.date(1999, 2, 3), datetime.date(2001, 10, 10)],
    "registration_date": [datetime.date(2005, 1, 20), datetime.date(2005, 8, 2)],
    "gender": ["female", "male"],
    "citizenship": ["UA", "MD"],
    "country_of_exploitation": ["POL", None],
    "exploitation_types": [["sexual_exploitation"], ["forced_labour", "forced_begging"]],
    "shelter_offered": [True, None],
})
d = case("canonical-parquet", "input.parquet", mission="UKR")
pq.write_table(table, d / "input.parquet")

# 7. HTCDS field names and value names.
case("htcds-csv", "input.csv",
     "cas_CaseNumber,prs_FirstName,prs_SecondName,prs_Birthdate,prs_Gender,prs_Citizenship,prs_IdentityNumber,cas_IncomingReferralDate,vic_TraffickingStatus,vic_TypeOfExploitation,vic_ForcedLabourIndustry,vic_MethodsOfControl,vic_RelationshipToTrafficker,cas_Status,org_Type,shelter_offered\n"
     "00042,Maria,Ceban,1990-04-02,Feminine,MD,AB123456,2006-03-01,ActualVictimOfTrafficking,SexualExploitation,,FalsePromises;WithholdsDocuments,Acquainted,Closed,NGO,yes\n"
     "00043,Andrei,Lungu,1984-11-30,Masculine,MD,,2006-04-11,PossibleVictimOfTrafficking,ForcedLabour,F_Construction,DebtBondage,Unaquainted,Active,NGO,no\n",
     profile="htcds", mission="MDA")

# 8. CTDC export quirks.
case("ctdc-csv", "input.csv",
     "yearOfRegistration,datasource,gender,ageBroad,majorityStatus,majorityStatusAtExploit,citizenship,CountryofExploitation,isForcedLabour,isSexualExploit,isOtherExploit,meansOfControlDebtBondage,meansOfControlThreats,typeOfLabourConstruction,typeOfLabourBegging,isAbduction,recruiterRelationFamily\n"
     "2015,Case management,Female,18--20,Adult,Minor,NA,ZZ,0.0,1.0,0.0,-99,1,0,0,-99,1\n"
     "2016,Hotline,Male,-99,-99,-99,00,RU,1,0,0,1,0,1,1,0,0\n"
     "2017,Case management,Transgender/NonConforming,9--17,Minor,Minor,KG,KZ,-99,-99,-99,-99,-99,-99,-99,1,-99\n",
     profile="ctdc", mission="KAZ")

# 9. A user profile in TOML.
case("user-profile-toml", "input.csv",
     "Номер;ФИО;Дата рожд.;Дата обращения;Пол жертвы;Гражданство;Приют;Вид эксплуатации\n"
     "7/2005;Абдуллаева Мадина;03/04/1990;15/05/2005;Ж.;Узбекистан;1;трудовая\n"
     "8/2005;Каримов Азиз;10/10/1975;01/06/2005;М.;нд;0;сексуальная\n",
     profile="profile.toml", mission="UZB",
     extra={"profile.toml": '''# A profile for an NGO that keeps its own column names and codes.
name = "ngo-tashkent"
extends = "canonical"
date_formats = ["%d/%m/%Y"]
missing = ["нд"]

[columns]
local_case_id = "Номер"
full_name = "ФИО"
birth_date = "Дата рожд."
registration_month = "Дата обращения"
gender = "Пол жертвы"
citizenship = "Гражданство"
exploitation_types = "Вид эксплуатации"

[values.gender]
"Ж." = "female"
"М." = "male"

[values.exploitation_types]
"трудовая" = "forced_labour"
"сексуальная" = "sexual_exploitation"

[flags]
"Приют" = "assistance_types:shelter"

[defaults]
data_source = "case_management"
'''})

# 10. One invalid row per rule: the batch is rejected whole.
ERR_HEADER = "case_id,first_name,last_name,birth_date,registration_date,case_closed_date,gender,citizenship,shelter_offered,shelter_accepted,age\n"
ERR_ROWS = [
    "E-1,Canaryfirst,Canarylast,1980-01-01,2005-01-10,,female,KGZ,yes,no,\n",       # valid
    "E-2,Aa,Bb,1980-01-01,31.02.2005,,female,KGZ,,,\n",                             # invalid_date
    "E-3,Aa,Bb,1980-01-01,2099-01-01,,female,KGZ,,,\n",                             # date_in_future
    "E-4,Aa,Bb,1980-01-01,1985-01-01,,female,KGZ,,,\n",                             # date_too_early
    ",Aa,Bb,1980-01-01,2005-01-01,,female,KGZ,,,\n",                                # required case id
    "E-6,Aa,Bb,1980-01-01,,,female,KGZ,,,\n",                                       # required registration
    "E-7,Aa,Bb,1980-01-01,2005-01-01,,Ð¶,KGZ,,,\n",                                # unknown_code (mojibake)
    "E-8,Aa,Bb,1980-01-01,2005-01-01,,female,QQ,,,\n",                              # invalid_country
    "E-9,Aa,Bb,1980-01-01,2005-01-01,,female,KGZ,maybe,,\n",                        # invalid_flag
    "E-10,Aa,Bb,2006-01-01,2005-01-01,,female,KGZ,,,\n",                            # born_after_registration
    "E-11,Aa,Bb,1980-01-01,2005-05-01,2005-01-01,female,KGZ,,,\n",                  # closed_before_registration
    "E-12,Aa,Bb,1980-01-01,2005-01-01,,female,KGZ,no,yes,\n",                       # accepted_without_offer
    "E-13,,,,2005-01-01,,female,KGZ,,,200\n",                                       # invalid_age
    "E-1,Aa,Bb,1980-01-01,2005-01-01,,female,KGZ,,,\n",                             # duplicate_case_id
    "E-15,Aa,Bb,1980-01-01,2005-01-01,,female,KGZ,,,,extra\n",                      # field_count
]
case("errors-rejected", "input.csv", ERR_HEADER + "".join(ERR_ROWS))
case("errors-accept-valid", "input.csv", ERR_HEADER + "".join(ERR_ROWS), accept_valid=True)

# 11. File-level problems.
case("error-missing-column", "input.csv", "case_id,gender\nA,female\n")
case("error-duplicate-column", "input.csv", "case_id,registration_date,gender,Gender\nA,2005-01-01,female,male\n")
case("error-empty-file", "input.csv", "")
case("error-header-only", "input.csv", "case_id,registration_date\n")
case("error-not-xlsx", "input.xlsx", "this is not a spreadsheet\n")
case("error-bad-jsonl", "input.jsonl",
     '{"case_id": "A", "registration_date": "2005-01-01"}\n'
     'not json at all\n'
     '{"case_id": "B", "registration_date": "2005-02-01", "gender": {"nested": 1}}\n',
     accept_valid=True)
print("golden inputs written under", HERE)
